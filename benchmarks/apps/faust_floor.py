"""Faust floor: the same Faust consumer and batching as the worker, with no work per event.

The agent takes batches with ``stream.take_events`` (as ``meterstream worker`` does, same
batch size and wait), decodes each record with orjson and counts its events. No state,
no changelog, no outputs: what is left is the cost of Faust delivering records to an
agent, the ceiling for any Faust-based consumer on this machine, per record layout.
Done when every event was consumed (``totals_equal`` is None: nothing is summed).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from benchmarks.apps._args import load_truth, parse, write_result
from streams.config import AggregatorSettings

args = parse()
expected_events = int(load_truth(args.truth)["total_events"])
batching = AggregatorSettings()

app = faust.App(
    args.group,
    broker=f"kafka://{args.bootstrap}",
    datadir=str(args.state_dir),
    topic_partitions=args.partitions,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=max(4096, batching.batch_max_events * 2),
    web_enabled=False,
)
events_topic = app.topic(args.topic, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
progress: dict[str, Any] = {"events": 0, "first": None, "done": False}


@app.agent(events_topic)
async def count(stream: Any) -> None:
    async for batch in stream.take_events(batching.batch_max_events,
                                          within=batching.batch_max_ms / 1000):
        if progress["first"] is None:
            progress["first"] = time.time()
        for event in batch:
            doc = orjson.loads(event.message.value)
            progress["events"] += len(doc) if isinstance(doc, list) else 1
        if progress["events"] >= expected_events and not progress["done"]:
            progress["done"] = True
            write_result(args.result, first_event_s=progress["first"], done_s=time.time(),
                         events=progress["events"], totals_equal=None)


if __name__ == "__main__":
    faust.Worker(app, loglevel=logging.WARNING, quiet=True).execute_from_commandline()
