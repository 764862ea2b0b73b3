"""Stripe sink benchmarks: dispatch throughput against the fake Stripe, and how many Stripe
calls a month of raw usage events becomes.

    .venv/bin/python benchmarks/sink_bench.py [--quick]

1. Throughput (events/s): the sink's dispatcher (per-pair order, one call per pair,
   token bucket, retries) with the real adapter clients (v1: one event a call; v2 stream:
   100 events a call) against the in-process fake Stripe, no Kafka (the integration test
   reports the end-to-end figure with a broker). Rate limit set far above what the box
   can do, concurrency 8, with and without faults (20% 429, 5% 500, 2% timeouts). Also the
   dispatcher alone with a no-op client: the sink's own ceiling.
2. Calls vs events for a realistic month slice: 10,000 customers (Zipf 1.1 usage shares),
   4 meters, 1-hour windows, 10 million raw events, each customer active in a random share
   of the month's hours, 0.5% late events each causing a correction. Raw events become
   one summary per touched (customer, meter, hour) plus corrections; v1 makes one call per
   summary, v2 one per 100.

Prints a table and writes benchmarks/results/sink.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from prometheus_client import CollectorRegistry

from streams.config import MeterSettings, StripeSettings
from streams.core.summaries import summary_id
from streams.fakes.stripe import FakeStripe, FakeStripeConfig, Faults, MeterConfig
from streams.sink.dispatch import Dispatcher, Work
from streams.sink.engines.stripe_meter import make_meter_event_client
from streams.sink.kafka_io import Source
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent, MeterEventClient
from streams.sink.plan import Summary
from streams.sink.ratelimit import TokenBucket
from streams.util.backoff import Backoff

HOUR_MS = 3_600_000
METERS = {
    name: MeterSettings(name=name, stripe_event_name=name)
    for name in ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")
}
FAULTS = Faults(rate_429=0.20, rate_500=0.05, rate_timeout=0.02, timeout_hold_s=0.8)
RESULTS = Path(__file__).parent / "results" / "sink.json"


class NullClient:
    """Accepts everything instantly: measures the dispatcher alone."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.events = 0

    async def send(self, events: Sequence[MeterEvent]) -> None:
        self.events += len(events)
        await asyncio.sleep(0)

    async def aclose(self) -> None:
        return None


def make_works(n: int, customers: int) -> list[Work]:
    now_ms = int(time.time() * 1000)
    first = now_ms - now_ms % HOUR_MS - 48 * HOUR_MS
    works = []
    rng = random.Random(1)
    meters = list(METERS)
    for i in range(n):
        meter = meters[i % len(meters)]
        customer = f"c{(i // len(meters)) % customers:05d}"
        window = i // (customers * len(meters))
        start = first + window * HOUR_MS
        value = Decimal(rng.randint(1, 10**6)) / 100
        s = Summary(summary_id(customer, meter, start, 0), customer, meter, start,
                    start + HOUR_MS, 0, value, value, event_count=1)
        works.append(Work(s, b"", Source("usage.summaries", 0, i, customer),
                          stripe_customer_id=f"cus_{customer}"))
    return works


async def dispatch(client: MeterEventClient, works: list[Work]) -> float:
    """Seconds to finish every work item."""
    done = asyncio.Event()
    remaining = len(works)

    def finished(work: Work, outcome: str) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    async def dead_letter(work: Work, reason: str, detail: str) -> None:
        raise RuntimeError(f"unexpected dead letter: {reason} {detail}")

    d = Dispatcher(client, METERS, on_finished=finished, dead_letter=dead_letter,
                   metrics=SinkMetrics(CollectorRegistry()),
                   bucket=TokenBucket(100_000, 5_000), max_concurrency=8, call_timeout_s=10,
                   client_timeout_s=1.0, backoff=Backoff(base_s=0.5, cap_s=30))
    loop = asyncio.create_task(d.run())
    started = time.perf_counter()
    for w in works:
        d.submit(w)
    await done.wait()
    elapsed = time.perf_counter() - started
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    return elapsed


async def against_fake(mode: str, n: int, faults: Faults) -> dict[str, object]:
    config = FakeStripeConfig(meters=tuple(MeterConfig(id=f"mtr_{m}", event_name=m)
                                           for m in METERS), seed=1, faults=faults)
    async with FakeStripe(config) as fake:
        settings = StripeSettings(mode=mode, api_base=fake.url,  # type: ignore[arg-type]
                                  rate_limit_per_s=100_000, max_concurrency=8, timeout_s=1.0)
        client = make_meter_event_client(settings)
        try:
            elapsed = await dispatch(client, make_works(n, 2000))
        finally:
            await client.aclose()
        accepted = fake.ledger.accepted_count
        assert accepted == n, (accepted, n)
        return {"mode": mode, "faults": faults != Faults(), "events": n,
                "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed),
                "requests": fake.stats["requests"]}


async def dispatcher_alone(max_batch: int, n: int) -> dict[str, object]:
    client = NullClient(max_batch)
    elapsed = await dispatch(client, make_works(n, 2000))
    return {"mode": f"null client, batch {max_batch}", "faults": False, "events": n,
            "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}


def calls_per_month(seed: int = 7) -> dict[str, object]:
    customers, meters, hours, events = 10_000, 4, 30 * 24, 10_000_000
    late_rate = 0.005
    rng = random.Random(seed)
    weights = [1 / (rank ** 1.1) for rank in range(1, customers + 1)]
    scale = events / sum(weights)
    windows = 0.0
    for w in weights:
        per_meter = w * scale / meters
        active_hours = max(1.0, round(hours * rng.uniform(0.2, 1.0)))
        # Expected distinct hours touched by per_meter events spread over the active hours.
        touched = active_hours * (1 - (1 - 1 / active_hours) ** per_meter)
        windows += meters * touched
    summaries = round(windows + events * late_rate)
    v2_requests = math.ceil(summaries / 100)
    return {
        "customers": customers, "meters": meters, "window": "1h", "hours": hours,
        "raw_events": events, "windows_touched": round(windows),
        "corrections": round(events * late_rate), "summaries": summaries,
        "v1_calls": summaries, "v2_requests": v2_requests,
        "events_per_v1_call": round(events / summaries, 1),
        "events_per_v2_request": round(events / v2_requests, 1),
        "v1_hours_at_25_per_s": round(summaries / 25 / 3600, 2),
        "v1_minutes_at_1000_per_s": round(summaries / 1000 / 60, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    # Retries under injected faults are expected: keep their WARNING lines out of the table.
    logging.getLogger("streams").setLevel(logging.ERROR)
    n_v1, n_v2 = (2_000, 20_000) if args.quick else (10_000, 100_000)
    runs = [
        await dispatcher_alone(1, n_v2),
        await dispatcher_alone(100, n_v2),
        await against_fake("v1", n_v1, Faults()),
        await against_fake("v2", n_v2, Faults()),
        await against_fake("v1", n_v1, FAULTS),
        await against_fake("v2", n_v2, FAULTS),
    ]
    month = calls_per_month()
    print(f"{'mode':<24}{'faults':<8}{'events':>9}{'seconds':>9}{'events/s':>10}")
    for r in runs:
        print(f"{r['mode']!s:<24}{r['faults']!s:<8}{r['events']:>9}{r['seconds']:>9}"
              f"{r['events_per_s']:>10}")
    print("month slice:", json.dumps(month))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "throughput": runs, "month_slice": month,
        "notes": "dispatcher + real adapter clients + in-process fake Stripe (same event "
                 "loop), no Kafka; concurrency 8, rate limit 100k/s",
    }, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
