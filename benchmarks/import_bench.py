"""Import throughput: ``meterstream import`` of a 1,000,000-row JSON Lines file.

    python benchmarks/import_bench.py [--rows 1000000] [--bootstrap HOST:PORT]
        [--customers 1000] [--partitions 8] [--pack 1000] [--out benchmarks/results/import.json]

Without ``--bootstrap`` a local broker is started (streams.testing.cluster) and stopped at
the end. The file (written before the clock starts, to a temp dir) holds ``--rows`` events
of ``--customers`` customers, 4 meters, decimal string values; half the rows carry an id,
half get the derived one. The clock covers the whole :meth:`Importer.run`: listing,
content digest (one extra read of the file), reading, validation, packing, sending, and
the final flush and checkpoint (every 50,000 rows, as by default). Rows/s = rows / that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.config import KafkaSettings, Settings, TopicSettings
from streams.importer.run import Importer, ImportOptions
from streams.testing.cluster import kafka_cluster

METERS = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")


def write_file(path: Path, rows: int, customers: int) -> int:
    rng = random.Random(1)
    now_ms = int(time.time() * 1000)
    names = [f"cust-{i:05d}" for i in range(customers)]
    with path.open("wb") as f:
        for i in range(rows):
            ev: dict[str, Any] = {
                "customer": names[rng.randrange(customers)],
                "meter": METERS[i % 4],
                "value": f"{rng.randrange(1_000_000)}.{rng.randrange(1000):03d}",
                "timestamp": now_ms - rng.randrange(3_600_000),
            }
            if i % 2 == 0:
                ev["id"] = f"bench-{i}"
            f.write(orjson.dumps(ev) + b"\n")
    return path.stat().st_size


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def bench(bootstrap: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / "events.jsonl"
    size = write_file(path, args.rows, args.customers)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(events=f"{prefix}.events", events_dlq=f"{prefix}.events.dlq")
    await create_topics(bootstrap, [topics.events, topics.events_dlq], args.partitions)
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics)
    importer = Importer(settings, ImportOptions(
        source=str(path), checkpoint_path=workdir / "ck.json", pack=args.pack,
        progress=False))
    started = time.perf_counter()
    summary = await importer.run()
    seconds = time.perf_counter() - started
    assert summary.imported == args.rows and summary.rejected == 0, summary
    return {
        "benchmark": "import",
        "rows": args.rows,
        "file_bytes": size,
        "format": "jsonl",
        "customers": args.customers,
        "partitions": args.partitions,
        "pack": args.pack,
        "seconds": round(seconds, 3),
        "rows_per_s": round(args.rows / seconds),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "summary": summary.as_dict(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "broker": bootstrap,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "note": "2 shared cores; the broker runs on the same machine",
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--pack", type=int, default=1000)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "import.json")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(kafka_cluster(args.bootstrap or None))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="import-bench-")))
        result = asyncio.run(bench(bootstrap, args, workdir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| rows | seconds | rows/s | MB/s |\n|---|---|---|---|\n"
          f"| {result['rows']:,} | {result['seconds']} | {result['rows_per_s']:,} | "
          f"{result['mb_per_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
