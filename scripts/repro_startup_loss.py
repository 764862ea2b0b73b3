"""Reproduce the worker's start-up record loss found by the chaos suite (docs/reliability.md).

Each iteration: fresh topics on a private local broker, one customer record per customer
(the customers global table then has something to restore), 12,000 generated usage
records, and only then one ``meterstream worker`` whose batch step logs the offsets of
every batch it is given. Once the worker has counted as many record outcomes as it will,
every offset of ``usage.events`` is checked against the logged batches, and the group's
committed offsets are read. A record that never reached the batch step is lost to that
worker; if the group committed past it, it is lost for good.

    PYTHONPATH=. .venv/bin/python scripts/repro_startup_loss.py --iterations 20

Exit status 1 when any iteration lost a record. About 40 s per iteration here. In November
2026 (faust-streaming 0.15.3) 14 of 69 iterations lost between 1 and 50 records, all
within the first 150 offsets of a partition; without the customer records (an empty
global table) 0 of 72 did. ``DEVLOG=1`` adds Faust's dev logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.testing.distribution import free_ports
from streams.testing.kafka_local import KafkaLocal
from streams.testing.pipeline import PipelineEnv
from streams.testing.verdict import Workload

# The worker, with BatchProcessor.process logging {partition: [offsets]} per batch.
WORKER = """
import json, os, sys
from streams.runtime import processor
_process = processor.BatchProcessor.process
_log = open(os.environ["REPRO_BATCH_LOG"], "a")
async def process(self, events):
    offsets = {}
    for ev in events:
        offsets.setdefault(ev.message.partition, []).append(ev.message.offset)
    _log.write(json.dumps(offsets) + "\\n")
    _log.flush()
    return await _process(self, events)
processor.BatchProcessor.process = process
sys.argv = ["meterstream", "worker"]
from streams.cli import main
sys.exit(main())
"""


def counted(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            page = resp.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("meterstream_events_total{"))


async def topic_offsets(env: PipelineEnv, topic: str) -> dict[int, set[int]]:
    """Offsets of the records with a value (tick records have none) per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(env.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[int, set[int]] = {p: set() for p in range(env.partitions)}
        while batch := await consumer.getmany(timeout_ms=2000, max_records=20_000):
            for tp, records in batch.items():
                out[tp.partition].update(r.offset for r in records if r.value)
        return out
    finally:
        await consumer.stop()


async def committed(env: PipelineEnv, group: str, topic: str) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return [int(await consumer.committed(TopicPartition(topic, p)) or 0)
                for p in range(env.partitions)]
    finally:
        await consumer.stop()


async def iteration(bootstrap: str, workdir: Path, seed: int) -> dict[int, list[int]]:
    env = PipelineEnv(bootstrap, workdir, partitions=4)
    settings = env.settings()
    await env.create_topics()
    workload = Workload.make(seed=seed, events=12_000, customers=60, span_s=720)
    await env.produce([(c.encode(), orjson.dumps({"schema": "customer.v1", "customer": c,
                                                   "stripe_customer_id": f"cus_{c}"}))
                       for c in workload.customers], topic=settings.topics.customers)
    await env.produce(workload.records)
    (port,) = free_ports(1)
    batch_log = workdir / "batches.jsonl"
    environment = {**os.environ, **env.env, "REPRO_BATCH_LOG": str(batch_log),
                   "METERSTREAM_WORKER__STATE_DIR": str(workdir / "state"),
                   "METERSTREAM_WORKER__WEB_PORT": str(port)}
    with (workdir / "worker.log").open("wb") as log:
        worker = await asyncio.to_thread(
            subprocess.Popen, [sys.executable, "-c", WORKER], env=environment, stdout=log,
            stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline, last, same = time.monotonic() + 300, None, 0
        while time.monotonic() < deadline:
            n = await asyncio.to_thread(counted, port)
            if n is not None and n >= len(workload.records):
                break
            same = same + 1 if n is not None and n == last else 0
            if same >= 20:  # 20 s without progress: as many as it will count
                break
            last = n
            await asyncio.sleep(1)
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 60)
    in_topic = await topic_offsets(env, settings.topics.events)
    seen: dict[int, set[int]] = {p: set() for p in in_topic}
    for line in batch_log.read_text().splitlines():
        for p, offsets in json.loads(line).items():
            seen[int(p)].update(offsets)
    lost = {p: sorted(in_topic[p] - seen[p]) for p in in_topic if in_topic[p] - seen[p]}
    if lost:
        group = await committed(env, settings.worker.app_id, settings.topics.events)
        print(f"  never reached the batch step: {lost}; group committed {group} "
              f"(topic ends at {[max(o) + 1 if o else 0 for o in in_topic.values()]})")
    return lost


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="repro-startup-loss-"))
    broker = KafkaLocal(root / "broker", heap_mb=512)
    bootstrap = await asyncio.to_thread(broker.start, 120)
    failed = 0
    try:
        for i in range(args.iterations):
            workdir = root / f"it{i}"
            workdir.mkdir()
            lost = await iteration(bootstrap, workdir, 1000 + i)
            failed += bool(lost)
            print(f"iteration {i}: {'LOST ' + str(sum(map(len, lost.values()))) if lost else 'ok'}",
                  flush=True)
    finally:
        await asyncio.to_thread(broker.stop)
    print(f"{failed} of {args.iterations} iterations lost records; logs in {root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
