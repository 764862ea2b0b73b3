"""A quiet worker logs no ERROR line (issue 13, item 4).

After ``stream_processing_timeout`` (5 minutes by default) without new customer records,
Faust's stall detector logged ``ERROR ... Stream has not started processing
TP(topic='usage.customers', ...)`` every 2.5 s, though an idle customers topic is normal.
This test runs a worker with a few customer records and a little usage, then keeps it
quiet well past that timeout, shortened to a few seconds with Faust's own environment
setting ``STREAM_PROCESSING_TIMEOUT``, and asserts that the log has no ERROR line. The
fix: Faust's Kafka consumer no longer runs in the worker (the data plane reads the
customers topic itself, streams/runtime/customers.py), so no stall detector watches it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.testing.pipeline import PipelineEnv

pytestmark = pytest.mark.integration

STREAM_TIMEOUT_S = 4
# The detector runs every 2.5 x broker_commit_interval (1 s); this is several rounds past
# the timeout, counted from when the worker is ready.
QUIET_S = STREAM_TIMEOUT_S + 12
_ERROR = re.compile(r"\bERROR\b|\"level\":\s*\"ERROR\"")


async def _warm_group_coordinator(bootstrap: str, topic: str) -> None:
    """Join and leave a throwaway group, so that the broker's __consumer_offsets exists.

    On a broker that has never seen a group, aiokafka logs one ERROR
    ``GroupCoordinatorNotAvailableError`` while the broker creates that topic: a real,
    transient condition of a brand-new cluster, not what this test is about.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"warm-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()


async def test_idle_customers_topic_logs_no_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2,
                      extra_env={"STREAM_PROCESSING_TIMEOUT": str(STREAM_TIMEOUT_S)})
    await env.create_topics()
    settings = env.settings()
    await _warm_group_coordinator(kafka_bootstrap, settings.topics.customers)

    def customers(names: list[str]) -> list[tuple[bytes, bytes]]:
        return [(c.encode(), orjson.dumps({"schema": "customer.v1", "customer": c,
                                           "stripe_customer_id": f"cus_{c}"})) for c in names]

    await env.produce(customers(["c0", "c1"]), topic=settings.topics.customers)
    worker = env.start_worker("quiet")
    try:
        await worker.wait_ready(120)
        # Some traffic while it runs, as in production; then nothing for a while.
        await env.produce(customers(["c2", "c3"]), topic=settings.topics.customers)
        now_ms = int(time.time() * 1000)
        await env.produce([(c.encode(), orjson.dumps({
            "id": f"e-{c}", "customer": c, "meter": "cpu_seconds", "value": "1.5",
            "timestamp": now_ms})) for c in ("c0", "c1", "c2", "c3")])
        await asyncio.sleep(QUIET_S)
        assert worker.alive(), worker.log_path.read_text(errors="replace")[-3000:]
    finally:
        worker.stop(timeout_s=30)
    log = worker.log_path.read_text(errors="replace")
    errors = [line for line in log.splitlines() if _ERROR.search(line)]
    assert not errors, "ERROR lines from a quiet worker:\n" + "\n".join(errors[:10])
