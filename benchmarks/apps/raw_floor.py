"""The raw floor: an aiokafka consumer that only fetches and decodes every record with
orjson (the Python limit for reading this topic).

Partitions are assigned by hand (no group join) and the clock starts at the assignment,
before the first fetch: for this contender the fetch is the work. A small topic drains in
milliseconds, so the floor re-reads it from the beginning until ``--min-seconds`` have
passed and reports events / time over all passes (``passes`` in the result), a steadier
figure for the same records. "done" is the end of the first pass.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.apps._args import load_truth, parse, write_result


async def _one_pass(consumer: AIOKafkaConsumer, expected: int) -> int:
    events = 0
    while events < expected:
        batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
        for msgs in batch.values():
            for m in msgs:
                doc = orjson.loads(m.value)
                events += len(doc) if isinstance(doc, list) else 1
    return events


async def main() -> None:
    extra = argparse.ArgumentParser()
    extra.add_argument("--min-seconds", type=float, default=3.0)
    own, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = parse()
    expected = int(load_truth(args.truth)["total_events"])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=None, enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        first = time.time()
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        events = await _one_pass(consumer, expected)
        done = time.time()
        total, passes = events, 1
        while time.time() - first < own.min_seconds:
            await consumer.seek_to_beginning(*parts)
            total += await _one_pass(consumer, expected)
            passes += 1
        end = time.time()
    finally:
        await consumer.stop()
    write_result(args.result, first_event_s=first, done_s=done, events=events,
                 totals_equal=None, passes=passes, all_passes_events=total,
                 all_passes_events_per_s=total / (end - first),
                 first_pass_events_per_s=events / (done - first))


if __name__ == "__main__":
    asyncio.run(main())
