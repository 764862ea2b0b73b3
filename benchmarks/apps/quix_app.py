"""Quix Streams (the peer): the same tumbling-window sum per customer and meter.

Windows of ``--window-ms`` by event time (the event's ``timestamp`` field) with
``--grace-ms`` grace, closed per partition (``final(closing_strategy="partition")``), so the
harness's closer records close every data window. The window value is a dict of meter to
integer thousandths (one window state per customer, no repartition topic). Done when every
event was consumed and the sum of the final windows equals the ground truth.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from quixstreams import Application

from benchmarks.apps._args import load_truth, parse, write_result
from benchmarks.common import CLOSER_PREFIX, milli


def main() -> None:
    args = parse()
    truth = load_truth(args.truth)
    expected_events = int(truth["total_events"])
    expected: dict[str, int] = truth["totals_milli"]
    expected_sum = sum(expected.values())
    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", state_dir=str(args.state_dir),
        loglevel=logging.WARNING,
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)
    progress: dict[str, Any] = {"events": 0, "first": None, "final_sum": 0, "done": False}
    finals: dict[str, int] = defaultdict(int)

    def count(ev: Any) -> None:
        if progress["first"] is None:
            progress["first"] = time.time()
        progress["events"] += 1

    def initializer(ev: Any) -> dict[str, int]:
        return {ev["meter"]: milli(ev["value"])}

    def reducer(acc: dict[str, int], ev: Any) -> dict[str, int]:
        m = ev["meter"]
        acc[m] = acc.get(m, 0) + milli(ev["value"])
        return acc

    def collect(window: Any, key: Any, timestamp: int, headers: Any) -> None:
        if key.startswith(CLOSER_PREFIX):
            return
        for meter, v in window["value"].items():
            finals[f"{key}|{meter}"] += v
            progress["final_sum"] += v
        if (not progress["done"] and progress["events"] >= expected_events
                and progress["final_sum"] == expected_sum and dict(finals) == expected):
            progress["done"] = True
            write_result(args.result, first_event_s=progress["first"], done_s=time.time(),
                         events=progress["events"], totals_equal=True, keys=len(finals))
            app.stop()

    sdf = sdf.apply(lambda v: v if isinstance(v, list) else [v], expand=True)
    sdf = sdf.update(count)
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: int(value["timestamp"]))
    sdf = (sdf.tumbling_window(duration_ms=args.window_ms, grace_ms=args.grace_ms)
           .reduce(reducer=reducer, initializer=initializer)
           .final(closing_strategy="partition"))
    sdf = sdf.update(collect, metadata=True)
    app.run(sdf)
    if not progress["done"]:
        write_result(args.result, first_event_s=progress["first"], done_s=None,
                     events=progress["events"], totals_equal=dict(finals) == expected,
                     keys=len(finals))


if __name__ == "__main__":
    main()
