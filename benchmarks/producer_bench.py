"""Producer throughput: raw aiokafka send_batch vs UsageProducer unpacked and packed.

    python benchmarks/producer_bench.py --events 200000 [--bootstrap HOST:PORT]
        [--customers 100] [--partitions 8] [--out benchmarks/results/producer.json]
        [--profile DIR]

Without ``--bootstrap`` a local broker is started (streams.kafka.local, full JIT)
and stopped at the end. Each variant gets a fresh topic and sends the same events
(``--customers`` customers round-robin, meter ``cpu_seconds``, Decimal values):

* ``raw_send_batch``: records pre-encoded before the clock starts (ids, JSON), then
  appended into one aiokafka ``BatchBuilder`` per partition and sent with ``send_batch``;
  the baseline: what the wire costs without validation or SDK.
* ``producer_unpacked`` / ``producer_packed``: ``await UsageProducer.report(...)`` per
  event (validation, UUIDv7, JSON), then ``flush()``.

Every variant uses the same settings: idempotent, acks=all, the same compression and
batch size. Events/s = events / (first send .. last acknowledgement). Results go to
``--out`` as JSON and to stdout as a Markdown table, with each variant's client CPU
seconds (this process, set-up included): on a shared machine, wall time well above CPU
time means the run waited for CPU, and the ratios of one run are the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiokafka
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.kafka.client import key_partition
from streams.sdk.producer import UsageProducer, default_compression
from streams.sdk.uuid7 import uuid7_str

BATCH_BYTES = 512 * 1024


def make_events(n: int, customers: int) -> list[tuple[str, str, Decimal]]:
    names = [f"cust-{i:05d}" for i in range(customers)]
    return [(names[i % customers], "cpu_seconds", Decimal(i % 10_000) / 8) for i in range(n)]


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def raw_send_batch(bootstrap: str, topic: str, events: list[Any],
                         compression: str) -> float:
    now_ms = time.time_ns() // 1_000_000
    records = [
        (c.encode(), orjson.dumps({"id": uuid7_str(), "customer": c, "meter": m,
                                   "value": format(v, "f"), "timestamp": now_ms}))
        for c, m, v in events
    ]
    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                             compression_type=compression, max_batch_size=BATCH_BYTES,
                             max_request_size=BATCH_BYTES + 65_536, linger_ms=0)
    await kafka.start()
    try:
        partitions = sorted(await kafka.partitions_for(topic))
        cache: dict[bytes, int] = {}
        began = time.perf_counter()
        builders: dict[int, Any] = {}
        futures = []
        for key, value in records:
            p = cache.get(key)
            if p is None:
                p = cache[key] = key_partition(key, partitions)
            builder = builders.get(p)
            if builder is None:
                builder = builders[p] = kafka.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:
                futures.append(await kafka.send_batch(builder, topic, partition=p))
                builder = builders[p] = kafka.create_batch()
                builder.append(timestamp=None, key=key, value=value)
        for p, builder in builders.items():
            futures.append(await kafka.send_batch(builder, topic, partition=p))
        await asyncio.gather(*futures)
        return time.perf_counter() - began
    finally:
        await kafka.stop()


async def producer_variant(bootstrap: str, topic: str, events: list[Any], *, pack: bool,
                           compression: str, profile: Path | None) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool:
        producer = UsageProducer(topic=topic, bootstrap_servers=bootstrap, spool_dir=spool,
                                 pack=pack, compression=compression,  # type: ignore[arg-type]
                                 max_batch_size=BATCH_BYTES)
        await producer.start()
        profiler = _profiler(profile)
        began = time.perf_counter()
        report = producer.report
        for customer, meter, value in events:
            await report(customer, meter, value)
        await producer.flush()
        elapsed = time.perf_counter() - began
        if profiler is not None and profile is not None:
            profiler.stop()
            _write_profile(profiler, profile, f"producer_{'packed' if pack else 'unpacked'}")
        await producer.close()
        return elapsed


def _write_profile(profiler: Any, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.html").write_text(profiler.output_html())
    (directory / f"{name}.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False))


def _profiler(profile: Path | None) -> Any:
    if profile is None:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")
    profiler.start()
    return profiler


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    events = make_events(args.events, args.customers)
    # The inputs are long-lived: keep them out of the garbage collector's scans, as a
    # worker's own long-lived heap would be after warm-up.
    gc.collect()
    gc.freeze()
    compression = default_compression()
    stamp = int(time.time())
    results: dict[str, Any] = {}
    variants = [("raw_send_batch", None), ("producer_unpacked", False),
                ("producer_packed", True)]
    for name, pack in variants:
        topic = f"bench.{name}.{stamp}"
        await create_topic(bootstrap, topic, args.partitions)
        cpu_began = time.process_time()
        if pack is None:
            elapsed = await raw_send_batch(bootstrap, topic, events, compression)
        else:
            elapsed = await producer_variant(bootstrap, topic, events, pack=pack,
                                             compression=compression, profile=args.profile)
        # CPU seconds of this process (client side only; includes set-up, such as the
        # raw variant's pre-encoding and client start/stop): a hint on a loaded machine.
        cpu = time.process_time() - cpu_began
        results[name] = {"seconds": round(elapsed, 3),
                         "events_per_s": round(args.events / elapsed),
                         "client_cpu_seconds": round(cpu, 3)}
        print(f"{name}: {args.events / elapsed:,.0f} events/s", file=sys.stderr)
    raw = results["raw_send_batch"]["events_per_s"]
    for name in ("producer_unpacked", "producer_packed"):
        results[name]["ratio_to_raw"] = round(results[name]["events_per_s"] / raw, 3)
    return {
        "benchmark": "producer",
        "events": args.events,
        "customers": args.customers,
        "partitions": args.partitions,
        "compression": compression,
        "batch_bytes": BATCH_BYTES,
        "results": results,
        "goals": {
            "packed_events_per_s_min": 200_000,
            "unpacked_ratio_to_raw_min": 0.5,
            "packed_met": results["producer_packed"]["events_per_s"] >= 200_000,
            "unpacked_met": results["producer_unpacked"]["ratio_to_raw"] >= 0.5,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "aiokafka": aiokafka.__version__,
            "broker": args.bootstrap or "kafka_local (same machine)",
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }


def table(report: dict[str, Any]) -> str:
    lines = ["| variant | events/s | seconds | vs raw | client CPU s |",
             "|---|---:|---:|---:|---:|"]
    for name, r in report["results"].items():
        ratio = r.get("ratio_to_raw", 1.0)
        lines.append(f"| {name} | {r['events_per_s']:,} | {r['seconds']} | {ratio:.2f} "
                     f"| {r['client_cpu_seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/producer.json"))
    parser.add_argument("--profile", type=Path, default=None,
                        help="write pyinstrument HTML profiles of the producer runs here")
    args = parser.parse_args(argv)
    if args.bootstrap:
        report = asyncio.run(run(args, args.bootstrap))
    else:
        from streams.kafka.local import KafkaLocal

        with KafkaLocal(quick_jit=False, heap_mb=1024) as broker:
            report = asyncio.run(run(args, broker.bootstrap_servers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
