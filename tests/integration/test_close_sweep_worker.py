"""A worker closes a window start's windows over several batches, and does not wait for new
records to go on (docs/exactly-once.md, "Emitting the finals is spread over batches").

With ``AGGREGATOR__BATCH_MAX_CLOSES=1`` a batch with no events (ticks only, or a sweep
batch) emits at most 8 finals. The events of 200 customers lie in a window that ended long
ago; the worker's first idle tick moves the watermark past it. Without a sweep batch (no
input records, its own transaction) as soon as a partition with no records waiting has
windows left to close, the next 8 finals would wait for the next idle tick (every
``IDLE_CLOSE_AFTER_S``, 5 s here): over 2 minutes for the 200 finals. They must all
arrive within 60 s, with exact totals, and the sweeps write nothing into the input topic.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic

pytestmark = pytest.mark.integration

CUSTOMERS = 200


async def test_finals_of_a_window_start_come_out_one_batch_each_without_new_records(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=1, idle_close_after_s=5,
                      extra_env={"METERSTREAM_AGGREGATOR__BATCH_MAX_CLOSES": "1"})
    await env.create_topics()
    settings = env.settings()
    worker = env.start_worker("sweep")
    try:
        await worker.wait_ready(120)
        ts = int(time.time() * 1000) - 200_000  # its window ended over 2 minutes ago
        await env.produce([(f"c{i:03d}".encode(), orjson.dumps({
            "id": f"e{i}-{j}", "customer": f"c{i:03d}", "meter": "cpu_seconds",
            "value": "1.5", "timestamp": ts + j})) for i in range(CUSTOMERS) for j in range(2)])
        produced = time.monotonic()

        def finals(msgs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {m["customer"]: m for m in msgs if m["kind"] == "final"}

        summaries = await read_topic(kafka_bootstrap, settings.topics.summaries,
                                     until=lambda m: len(finals(m)) >= CUSTOMERS,
                                     quiet_s=1, timeout_s=90)
        took = time.monotonic() - produced
        assert worker.alive(), worker.log_path.read_text(errors="replace")[-3000:]
    finally:
        worker.stop(timeout_s=30)
    # The input holds the 120 events and the idle ticks, one per IDLE_CLOSE_AFTER_S at
    # most: none from the sweeps.
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topics.events, 0)
        (end,) = (await consumer.end_offsets([tp])).values()
    finally:
        await consumer.stop()
    assert 2 * CUSTOMERS < end <= 2 * CUSTOMERS + 2 + took / 5, end
    got = finals(summaries)
    assert sorted(got) == [f"c{i:03d}" for i in range(CUSTOMERS)]
    assert {Decimal(m["total"]) for m in got.values()} == {Decimal(3)}
    assert len({m["id"] for m in summaries}) == CUSTOMERS  # one final each, nothing else
    assert took < 60, f"the finals took {took:.1f} s"
