"""``meterstream loadgen``: produce a deterministic workload to the events topic.

The workload is :func:`streams.loadgen.generate`'s: pre-encoded (key, value) records,
deliberately invalid ones included, so it goes through a plain idempotent aiokafka
producer (acks=all) rather than the UsageProducer SDK, which validates what it sends.
``--rate`` is the offered rate in events per second (0: as fast as the broker takes
them); ``--truth`` writes the workload's ground truth as JSON for a later check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.config import Settings

__all__ = ["make_producer", "produce_paced", "run_loadgen"]

_MAX_IN_FLIGHT = 5_000


def make_producer(settings: Settings, *, linger_ms: int = 20) -> AIOKafkaProducer:
    """An idempotent acks=all producer for ``settings.kafka`` (TLS/SASL included)."""
    from streams.kafka.client import client_options, default_compression

    options: dict[str, Any] = client_options(
        settings.kafka, settings.kafka.bootstrap_servers, compression=default_compression(),
        max_batch_size=256 * 1024, request_timeout_ms=30_000,
    )
    options["linger_ms"] = linger_ms
    return AIOKafkaProducer(**options)


def _events_in(value: bytes) -> int:
    """Events a record carries: the length of a packed array, else 1."""
    if value[:1] == b"[":
        try:
            loaded = json.loads(value)
        except ValueError:
            return 1
        return len(loaded) if isinstance(loaded, list) else 1
    return 1


async def produce_paced(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    rate_per_s: float,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send every record, keeping the offered rate at ``rate_per_s`` events per second
    (0: unpaced), and wait for every acknowledgement. Returns the events sent.

    Pacing is against the start time, not per record, so a slow moment is caught up.
    At most ``_MAX_IN_FLIGHT`` sends wait for their ack at once.
    """
    began = time.monotonic()
    events = 0
    pending: list[asyncio.Future[Any]] = []
    for key, value in records:
        n = _events_in(value)
        if rate_per_s > 0:
            due = began + events / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pending.append(await producer.send(topic, key=key, value=value))
        events += n
        if on_sent is not None:
            on_sent(n)
        if len(pending) >= _MAX_IN_FLIGHT:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return events


def run_loadgen(settings: Settings, args: argparse.Namespace) -> int:
    """Generate and produce the workload; exit code 0, or 2 on bad options."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate

    console = Console(stderr=True)
    checks = [
        (args.events >= 1, "--events must be >= 1"),
        (args.customers >= 1, "--customers must be >= 1"),
        (args.pack >= 1, "--pack must be >= 1"),
        (args.rate >= 0, "--rate must be >= 0"),
        (args.span_s >= 1, "--span-s must be >= 1"),
        (all(0 <= r <= 1 for r in (args.duplicate_rate, args.late_rate, args.invalid_rate))
         and args.duplicate_rate + args.late_rate + args.invalid_rate <= 1,
         "rates must be in [0, 1] and add up to at most 1"),
    ]
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        for msg in problems:
            console.print(f"meterstream loadgen: {msg}", markup=False)
        return 2
    end_ms = int(time.time() * 1000) - 2_000
    spec = WorkloadSpec(
        events=args.events, customers=args.customers, zipf_s=args.zipf,
        duplicate_rate=args.duplicate_rate, late_rate=args.late_rate,
        invalid_rate=args.invalid_rate, pack=args.pack, span_ms=args.span_s * 1000,
        end_ms=end_ms, grace_ms=max(2_000, settings.aggregator.grace_s * 1000),
        thresholds_minor=settings.aggregator.thresholds_minor, seed=args.seed,
    )
    truth = GroundTruth()
    topic = settings.topics.events
    progress = Progress(
        TextColumn("[bold]loadgen[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=not console.is_terminal,
    )

    async def produce() -> int:
        producer = make_producer(settings)
        await producer.start()
        try:
            if args.stripe_customer_prefix:
                # Map every generated customer to a Stripe customer id, so that the sink
                # bills them instead of holding their summaries.
                for i in range(args.customers):
                    customer = f"cust-{i:05d}"
                    await producer.send(settings.topics.customers, key=customer.encode(),
                                        value=orjson.dumps({
                                            "schema": "customer.v1", "customer": customer,
                                            "stripe_customer_id":
                                                f"{args.stripe_customer_prefix}{customer}"}))
                await producer.flush()
            with progress:
                task = progress.add_task(f"-> {topic}", total=args.events)
                return await produce_paced(
                    producer, topic, generate(spec, truth), rate_per_s=args.rate,
                    on_sent=lambda n: progress.advance(task, n),
                )
        finally:
            await producer.stop()

    began = time.monotonic()
    sent = asyncio.run(produce())
    elapsed_s = time.monotonic() - began
    print(f"loadgen: {truth.records} records, {sent} events ({truth.distinct_events} distinct, "
          f"{truth.duplicates} duplicates, {truth.late} late, "
          f"{sum(truth.dead_letters.values())} invalid) to {topic} in {elapsed_s:.1f}s "
          f"({sent / max(elapsed_s, 1e-9):,.0f} events/s)")
    if args.truth is not None:
        doc = truth.as_dict()
        doc["spec"] = {k: (str(v) if isinstance(v, Decimal) else v)
                       for k, v in vars(spec).items() if k not in ("meters", "thresholds_minor")}
        args.truth.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"loadgen: ground truth written to {args.truth}")
    return 0
