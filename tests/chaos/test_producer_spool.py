"""Scenario 6: producers spool while the broker is down; the spool drains afterwards.

The whole pipeline runs on a private broker (SASL_SSL). Valid events (duplicates and
late ones included: a duplicate is the same event id reported twice) go through the
producer SDK (:class:`streams.sdk.producer.UsageProducer`, in-process, with its on-disk
spool); the invalid records go raw to the topic, as a producer without the SDK would
send them. Mid-stream the broker stops while the SDK keeps reporting: it notices,
spools to disk, and once the broker is back replays the spool in order. The worker and
the sink live through the same outage. Pass mark: the ledger equals the ground truth.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from streams.kafka.local import KafkaLocal
from streams.sdk.producer import UsageProducer
from streams.testing.verdict import Workload

DOWN_S = 15


def split(workload: Workload) -> tuple[list[dict[str, object]], list[tuple[bytes, bytes]]]:
    """Valid events (for the SDK) and invalid records (raw), in workload order."""
    valid, invalid = [], []
    bad_ids = {f"bad-{i}" for i in range(workload.spec.events)}
    for key, value in workload.records:
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError:
            invalid.append((key, value))
            continue
        if body.get("id") in bad_ids:
            invalid.append((key, value))
        else:
            valid.append(body)
    return valid, invalid


@pytest.mark.timeout(1200)
async def test_producer_spools_while_broker_down(private_broker: KafkaLocal, tmp_path: Path,
                                                 sasl_env, scenario) -> None:
    broker = private_broker
    workload = Workload.make(seed=66, events=12_000, customers=60, span_s=8 * 60)
    valid, invalid = split(workload)
    assert len(invalid) == workload.invalid
    s = await scenario(broker.sasl_bootstrap_servers, workload,
                       extra_env=sasl_env(broker)).start(preload=False)
    await s.run.env.produce(invalid)

    producer = UsageProducer.from_settings(
        s.run.settings, spool_dir=tmp_path / "spool", unreachable_after_s=1.0,
        retry_backoff_max_s=0.5, request_timeout_ms=5_000, close_timeout_s=120.0)
    sent = 0
    peak_spool = 0

    async def report(n: int) -> None:
        nonlocal sent, peak_spool
        for body in valid[sent:sent + n]:
            await producer.report(str(body["customer"]), str(body["meter"]),
                                  Decimal(str(body["value"])),
                                  timestamp=int(str(body["timestamp"])),
                                  id=str(body["id"]))
        sent = min(len(valid), sent + n)
        peak_spool = max(peak_spool, producer.spool.pending_bytes)
        await asyncio.sleep(0.02)

    async with producer:
        while sent < len(valid) // 3:
            await report(100)
        await producer.flush()
        began = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(broker.stop))
        while not stopping.done():  # keep reporting while the broker goes away
            await report(20)
        deadline = time.monotonic() + 120
        while not producer.spooling:
            assert time.monotonic() < deadline, "the SDK never noticed the broker was gone"
            await report(5)
        while sent < 2 * len(valid) // 3 or time.monotonic() - began < DOWN_S:
            await report(20)
        await producer.flush()  # durable in the spool
        spooled_while_down = producer.spool.pending_bytes
        starting = asyncio.create_task(asyncio.to_thread(broker.start, 120))
        while not starting.done():
            await report(10)
        await starting
        down_for = time.monotonic() - began
        while sent < len(valid):
            await report(100)
        deadline = time.monotonic() + 300
        while producer.spooling:
            assert time.monotonic() < deadline, "the spool did not drain"
            await asyncio.sleep(0.2)
    diff = await s.settle(timeout_s=900)
    await s.verdict(diff, {"broker_down_s": round(down_for)}, sdk_events=len(valid),
                    raw_invalid_records=len(invalid), spool_bytes_while_down=spooled_while_down,
                    spool_bytes_peak=peak_spool)
    assert spooled_while_down > 0
