"""A real worker fed thousands of hostile records keeps running and loses nothing.

3,000 records from ``streams.testing.hostile`` (seeded) go to a real broker: valid single
and packed events mixed with every kind of wrong record, resends of valid events, records
without a key or with a 200 KB key, forged tick headers, and three records of about 1 MiB:
a valid packed record just under the limit, the same just over it (only producible
compressed: the broker's ``message.max.bytes`` is 1 MiB), and 1 MiB of random bytes,
whose dead letter must still fit in one message. The worker must stay up, the summaries
must add up exactly to the valid events, the DLQ must hold exactly the expected dead
letters by reason, and /metrics must count the duplicates.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.kafka.local.process import free_ports
from streams.loadgen.generate import totals_from_summaries
from streams.runtime.records import TICK_HEADER
from streams.testing.hostile import HostileRecord, hostile_workload
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic

SEED = 20_261_123
RECORDS = 3_000


async def produce(bootstrap: str, topic: str, records: list[HostileRecord]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=20,
        max_batch_size=256 * 1024, compression_type="lz4", max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = []
        for i, rec in enumerate(records):
            # Every 100th record also carries a forged tick header the worker must ignore.
            headers = [(TICK_HEADER, b"not-a-number")] if i % 100 == 7 else None
            futures.append(await producer.send(topic, key=rec.key, value=rec.value,
                                               headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def duplicates_counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("meterstream_events_total{") and 'outcome="duplicate"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_hostile_records_never_stop_the_worker(kafka_bootstrap: str,
                                                     tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    event_ms = (now_ms // 60_000 - 3) * 60_000
    records, truth = hostile_workload(SEED, RECORDS, now_ms=now_ms, event_ms=event_ms)
    kinds = Counter(r.kind for r in records)
    assert kinds["record_too_large"] == kinds["just_under_1mib"] == 1
    assert truth.accepted > 500 and truth.duplicates > 50 and len(truth.dead) >= 14

    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2)
    await env.create_topics()
    settings = env.settings()
    await produce(kafka_bootstrap, settings.topics.events, records)
    port = free_ports(1)[0]
    worker = env.start_worker(web_port=port)
    try:
        summaries = await read_topic(
            env.bootstrap, settings.topics.summaries,
            until=lambda m: totals_from_summaries({s["id"]: s for s in m}) == truth.totals,
            quiet_s=1, timeout_s=150)
        assert totals_from_summaries({s["id"]: s for s in summaries}) == truth.totals

        n_dead = sum(truth.dead.values())

        def where(d: dict[str, Any]) -> tuple[int, int, int | None]:
            src = d["source"]
            return src["partition"], src["offset"], src["index"]

        dead = await read_topic(env.bootstrap, settings.topics.events_dlq,
                                until=lambda m: len({where(d) for d in m}) >= n_dead,
                                quiet_s=1, timeout_s=60)
        unique = {where(d): d for d in dead}
        assert Counter(d["reason"] for d in unique.values()) == truth.dead
        too_large = [d for d in unique.values() if d["reason"] == "record_too_large"]
        assert len(too_large) == 1
        assert duplicates_counted(port) == truth.duplicates
        assert worker.alive(), worker.log_path.read_text()[-3000:]
    finally:
        code = worker.stop(timeout_s=30)
    assert code == 0, worker.log_path.read_text()[-3000:]
