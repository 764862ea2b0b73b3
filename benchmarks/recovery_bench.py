"""Restart recovery time of the worker with N keys of window state.

Builds state for ``--customers`` customers x 4 meters (one window record each, plus
their spend and dedup records), kills the worker with SIGKILL (so the local RocksDB cache
is discarded and the state comes back from the changelog alone), restarts it and
measures the time until /ready answers 200, and until it processes a new event.

    python benchmarks/recovery_bench.py --customers 25000 [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from streams.kafka.local import KafkaLocal
from streams.kafka.local.process import http_ok, wait_until_async
from streams.testing.pipeline import PipelineEnv

METERS = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except Exception as exc:  # not up yet
        code = getattr(exc, "code", 0)
        return int(code) if isinstance(code, int) else 0, ""


def _processed(port: int) -> float:
    _, text = _get(f"http://127.0.0.1:{port}/metrics")
    pattern = r"^meterstream_events_total\{[^}]*\} (\S+)"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


async def run(bootstrap: str, customers: int, out: Path) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="recovery-"))
    env = PipelineEnv(bootstrap, work, partitions=4, window_s=3600, idle_close_after_s=60)
    await env.create_topics()
    now = int(time.time() * 1000)
    records = [
        (f"c{i:06d}".encode(), orjson.dumps([
            {"id": f"e{i}-{m}", "customer": f"c{i:06d}", "meter": m, "value": "1",
             "timestamp": now - 1000} for m in METERS]))
        for i in range(customers)
    ]
    await env.produce(records)
    port = 17111
    worker = env.start_worker("r1", web_port=port)
    build_s = await wait_until_async(lambda: _processed(port) >= customers * 4, timeout_s=900,
                                     what="worker's first drain", child=worker, interval_s=0.1)
    await asyncio.sleep(3)  # let Faust commit and flush the changelog
    worker.kill()
    restart = time.monotonic()
    worker = env.start_worker("r1", web_port=port)
    await wait_until_async(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), timeout_s=600,
                           what="restarted worker", child=worker, interval_s=0.1)
    ready_s = time.monotonic() - restart
    await env.produce([(b"c000000", orjson.dumps(
        {"id": "probe", "customer": "c000000", "meter": "cpu_seconds", "value": "1",
         "timestamp": int(time.time() * 1000)}))])
    await wait_until_async(lambda: _processed(port) >= 1, timeout_s=120,
                           what="restarted worker's first event", child=worker, interval_s=0.1)
    first_event_s = time.monotonic() - restart
    _, usage = _get(f"http://127.0.0.1:{port}/customers/c000000/usage")
    env.stop_all()
    state_keys = customers * 4 + customers * 2  # windows, spend, dedup shards (>= 1 each)
    result = {
        "customers": customers,
        "window_keys": customers * 4,
        "state_keys_at_least": state_keys,
        "build_s": round(build_s, 1),
        "restart_to_ready_s": round(ready_s, 1),
        "restart_to_first_event_s": round(first_event_s, 1),
        "usage_after_restart": json.loads(usage) if usage else None,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recovery.json"))
    args = parser.parse_args()
    if args.bootstrap:
        result = asyncio.run(run(args.bootstrap, args.customers, args.out))
    else:
        with KafkaLocal(quick_jit=False) as kafka:
            result = asyncio.run(run(kafka.bootstrap_servers, args.customers, args.out))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
