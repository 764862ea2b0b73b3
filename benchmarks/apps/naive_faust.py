"""Naive Faust: the tutorial-style agent, ``table[key] += value`` per event on a RocksDB
table (one RocksDB put and one changelog message per event, Faust defaults otherwise).

No windows, validation or dedup: it keeps a running total per (customer, meter), in
integer thousandths. Done when every event was consumed and the table's totals equal
the ground truth (read back from the table itself, outside any stream context).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any

import faust
import orjson

from benchmarks.apps._args import load_truth, parse, write_result
from benchmarks.common import milli

args = parse()
truth = load_truth(args.truth)
expected_events = int(truth["total_events"])
expected_totals: dict[str, int] = truth["totals_milli"]

app = faust.App(
    args.group,
    broker=f"kafka://{args.bootstrap}",
    store="rocksdb://",
    datadir=str(args.state_dir),
    topic_partitions=args.partitions,
    table_standby_replicas=0,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
events_topic = app.topic(args.topic, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
totals = app.Table("totals", default=int, partitions=args.partitions,
                   options={"driver": "rocksdict"})
progress: dict[str, Any] = {"events": 0, "first": None, "checking": False}


def check_and_finish(done_s: float) -> None:
    table_totals = {k: v for k, v in totals.items() if not k.startswith("zz-closer-")}
    equal = table_totals == expected_totals
    write_result(args.result, first_event_s=progress["first"], done_s=done_s,
                 events=progress["events"], totals_equal=equal,
                 checked_s=time.time(), keys=len(table_totals))


@app.agent(events_topic)
async def add(stream: Any) -> None:
    async for value in stream:
        if progress["first"] is None:
            progress["first"] = time.time()
        doc = orjson.loads(value)
        for ev in doc if isinstance(doc, list) else (doc,):
            totals[f"{ev['customer']}|{ev['meter']}"] += milli(ev["value"])
            progress["events"] += 1
        if progress["events"] >= expected_events and not progress["checking"]:
            progress["checking"] = True
            done = time.time()
            # A fresh context: no current event, so reads span every assigned partition.
            asyncio.get_running_loop().call_soon(check_and_finish, done,
                                                 context=contextvars.Context())


if __name__ == "__main__":
    faust.Worker(app, loglevel=logging.WARNING, quiet=True).execute_from_commandline()
