"""The Stripe sink against a real broker and the in-process fake Stripe, with faults.

v2 (the big one): 100,000 summaries (2,000 customers x 4 meters x 11 hourly windows, 12%
corrections, 2% duplicates, a few values needing a split), one pre-aggregated meter,
20% 429s, 5% 500s and 2% timeouts. One customer has no Stripe id at first: its summaries
are held, and sent once its customer record arrives. Afterwards the fake's totals equal
ours exactly, its identifiers are exactly the planned ones (none twice, none missing),
reconcile finds no difference, the request rate stayed under the limit, and every offset
is committed.

v1 (smaller): the same faults, one call per event; one customer maps to a Stripe customer
that does not exist, so Stripe refuses its events (400): they land in the summaries DLQ,
are counted, and reconcile reports exactly those pairs. Stripe's one-call-per-customer-
per-meter limit is observed by the fake: never two calls of a pair at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.config import (
    KafkaSettings,
    MeterSettings,
    Settings,
    StripeSettings,
    TopicSettings,
    WorkerSettings,
)
from streams.core.money import EXACT
from streams.core.summaries import summary_id
from streams.fakes.stripe import FakeStripe, FakeStripeConfig, Faults, MeterConfig
from streams.sink.engines.stripe_meter import make_meter_event_client
from streams.sink.metrics import SinkMetrics
from streams.sink.plan import parse_summary, plan_values
from streams.sink.reconcile import reconcile
from streams.sink.sink import StripeSink
from streams.testing.readback import read_back
from streams.testing.topics import TopicFactory

HOUR_MS = 3_600_000
METERS = (
    MeterSettings(name="cpu_seconds", stripe_event_name="cpu_seconds"),
    MeterSettings(name="gpu_seconds", stripe_event_name="gpu_seconds", stripe_window="hour"),
    MeterSettings(name="memory_gb_seconds", stripe_event_name="memory_gb_seconds"),
    MeterSettings(name="executions", stripe_event_name="executions", aggregation="count"),
)
FAKE_METERS = tuple(
    MeterConfig(id=f"mtr_{m.name}", event_name=m.stripe_event_name,
                event_time_window=m.stripe_window)
    for m in METERS
)
FAULTS = Faults(rate_429=0.20, rate_500=0.05, rate_timeout=0.02, timeout_hold_s=0.8)
CLIENT_TIMEOUT_S = 0.5
# What the fake may see in any sliding 1 s window: the rate, plus the bucket's burst (50 ms
# worth of calls, 5%), plus requests that left us spread over slightly more than 1 s but
# arrived within 1 s because their latency varied (up to 50 ms on a loaded 2-core box, 5%).
RATE_TOLERANCE = 1.1


@dataclass
class Workload:
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Per (Stripe customer, event name): what Stripe must hold in the end.
    expected: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    identifiers: set[str] = field(default_factory=set)
    summaries: int = 0
    periods: set[str] = field(default_factory=set)


def stripe_id(customer: str) -> str:
    return f"cus_{customer}"


def random_value(rng: random.Random, meter: MeterSettings) -> Decimal:
    if meter.aggregation == "count":
        return Decimal(rng.randint(1, 500))
    if meter.stripe_window == "none" and rng.random() < 0.005:
        # 18 to 22 significant digits: split into parts of at most 15.
        return Decimal(f"{rng.randint(10**11, 10**13)}.{rng.randint(10**6, 10**9 - 1)}")
    return Decimal(rng.randint(0, 10**7)) / Decimal(10**rng.randint(0, 4))


def build_workload(customers: list[str], windows: int, *, seed: int, correction_rate: float,
                   duplicate_rate: float) -> Workload:
    """Summaries in a realistic order: per customer in time order (finals at window close,
    corrections later), customers interleaved; duplicates re-read later."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    first_start = now_ms - now_ms % HOUR_MS - (windows + 1) * HOUR_MS
    w = Workload()
    timed: list[tuple[float, bytes, bytes]] = []
    for customer in customers:
        for meter in METERS:
            pair = (stripe_id(customer), meter.stripe_event_name)
            for k in range(windows):
                start = first_start + k * HOUR_MS
                total = random_value(rng, meter)
                deltas = [total]
                if rng.random() < correction_rate:
                    for _ in range(rng.randint(1, 2)):
                        deltas.append(random_value(rng, meter) if rng.random() > 0.05
                                      else Decimal(0))
                running = Decimal(0)
                t = start + HOUR_MS + rng.random() * 60_000
                for seq, delta in enumerate(deltas):
                    running = EXACT.add(running, delta)
                    obj = {
                        "schema": "meter_summary.v1",
                        "id": summary_id(customer, meter.name, start, seq),
                        "customer": customer, "meter": meter.name,
                        "aggregation": meter.aggregation,
                        "window_start_ms": start, "window_end_ms": start + HOUR_MS,
                        "seq": seq, "kind": "final" if seq == 0 else "correction",
                        "total": format(running, "f"), "delta": format(delta, "f"),
                        "event_count": 1 + seq, "period": time.strftime(
                            "%Y-%m", time.gmtime(start / 1000)),
                        "emitted_at_ms": int(t),
                    }
                    w.periods.add(str(obj["period"]))
                    raw = orjson.dumps(obj)
                    timed.append((t, customer.encode(), raw))
                    if rng.random() < duplicate_rate:
                        timed.append((t + rng.random() * 3 * HOUR_MS, customer.encode(), raw))
                    summary = parse_summary(raw)
                    w.identifiers.update(i for i, _ in plan_values(summary, meter))
                    w.summaries += 1
                    t += rng.random() * 2 * HOUR_MS
                if meter.stripe_window == "none" or running:
                    w.expected[pair] = EXACT.add(w.expected.get(pair, Decimal(0)), running)
    timed.sort(key=lambda x: x[0])
    w.records = [(key, raw) for _, key, raw in timed]
    return w


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def customer_record(customer: str, stripe_customer: str) -> tuple[bytes, bytes]:
    return customer.encode(), orjson.dumps({"schema": "customer.v1", "customer": customer,
                                            "stripe_customer_id": stripe_customer})


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
                   *, check: Callable[[], Awaitable[None]] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if check is not None:
            await check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def committed_offsets(bootstrap: str, group: str, topic: str,
                            partitions: int) -> tuple[dict[int, int], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
        return committed, {tp.partition: e for tp, e in ends.items()}
    finally:
        await consumer.stop()


def make_settings(bootstrap: str, topics: dict[str, str], mode: str, rate: float,
                  fake_url: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, client_id="sink-test"),
        topics=TopicSettings(summaries=topics["summaries"], summaries_dlq=topics["dlq"],
                             customers=topics["customers"]),
        meters=METERS,
        stripe=StripeSettings(mode=mode, api_base=fake_url,  # type: ignore[arg-type]
                              rate_limit_per_s=rate, max_concurrency=8,
                              timeout_s=CLIENT_TIMEOUT_S),
        worker=WorkerSettings(app_id=f"sinktest-{uuid.uuid4().hex[:12]}"),
    )


async def make_topics(topic_factory: TopicFactory, partitions: int) -> dict[str, str]:
    return {
        "summaries": await topic_factory(partitions=partitions),
        "dlq": await topic_factory(partitions=1),
        "customers": await topic_factory(partitions=2, compacted=True),
    }


def assert_totals(fake: FakeStripe, expected: dict[tuple[str, str], Decimal],
                  skip_customers: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    got = {pair: total for pair, total in fake.ledger.totals().items() if total}
    want = {pair: total for pair, total in expected.items()
            if total and pair[0] not in skip_customers}
    missing = {p: (want.get(p), got.get(p)) for p in set(want) | set(got)
               if want.get(p) != got.get(p)}
    assert not missing, f"{len(missing)} pairs differ, e.g. {list(missing.items())[:5]}"


async def test_sink_v2_100k_summaries_with_faults(topic_factory: TopicFactory) -> None:
    bootstrap = topic_factory.bootstrap_servers
    partitions = 8
    customers = [f"c{i:04d}" for i in range(2000)]
    held_customer = customers[0]
    workload = build_workload(customers, 11, seed=11, correction_rate=0.12,
                              duplicate_rate=0.02)
    assert len(workload.records) >= 100_000
    topics = await make_topics(topic_factory, partitions)
    await produce(bootstrap, topics["customers"],
                  [customer_record(c, stripe_id(c)) for c in customers[1:]])
    await produce(bootstrap, topics["summaries"], list(workload.records))
    registry = CollectorRegistry()
    rate = 5000.0
    async with FakeStripe(FakeStripeConfig(meters=FAKE_METERS, seed=5, faults=FAULTS)) as fake:
        settings = make_settings(bootstrap, topics, "v2", rate, fake.url)
        client = make_meter_event_client(settings.stripe)
        sink = StripeSink(settings, client, metrics=SinkMetrics(registry), held_recheck_s=2.0)
        started = time.monotonic()
        task = asyncio.create_task(sink.run())

        async def alive() -> None:
            if task.done():
                task.result()

        try:
            await wait_for(lambda: sink.running.is_set(), 60, "the sink to start", check=alive)
            # Everything but the held customer's summaries gets finished.
            await wait_for(lambda: sink.held.has(held_customer)
                           and sink.pending == len(sink.held), 240,
                           "all mapped summaries to finish", check=alive)
            assert registry.get_sample_value("meterstream_sink_held_summaries") == len(sink.held)
            assert not fake.ledger.events(customer=stripe_id(held_customer))
            elapsed = time.monotonic() - started
            await produce(bootstrap, topics["customers"],
                          [customer_record(held_customer, stripe_id(held_customer))])
            await wait_for(lambda: sink.pending == 0, 60, "held summaries to be sent",
                           check=alive)
            assert fake.ledger.events(customer=stripe_id(held_customer))
            await asyncio.sleep(1.5)  # one more commit tick
        finally:
            sink.stop()
            await task
            await client.aclose()
        stats = fake.stats
        print(f"\nv2: {workload.summaries} distinct summaries, {len(workload.records)} records, "
              f"{len(workload.identifiers)} events in {elapsed:.1f} s "
              f"({len(workload.identifiers) / elapsed:.0f} events/s); fake stats {stats}")

        assert_totals(fake, workload.expected)
        assert fake.ledger.identifiers == workload.identifiers
        assert int(stats["max_rate_per_s"]) <= rate * RATE_TOLERANCE + 1  # type: ignore[call-overload]
        faults = stats["faults"]
        assert isinstance(faults, dict) and faults["429"] > 0 and faults["timeout"] > 0
        committed, ends = await committed_offsets(bootstrap, sink.group_id,
                                                  topics["summaries"], partitions)
        assert committed == ends
        assert registry.get_sample_value("meterstream_sink_pending_summaries") == 0
        assert registry.get_sample_value("meterstream_sink_summaries_total",
                                          {"outcome": "duplicate"})
        assert not registry.get_sample_value("meterstream_sink_dlq_total",
                                              {"reason": "stripe_rejected"})

        fake.set_faults(Faults())
        for period in sorted(workload.periods):
            out = io.StringIO()
            result = await reconcile(settings, period, out=out)
            assert result.exit_code == 0, out.getvalue()
            assert not result.differences and result.compared > 0


async def test_sink_v1_faults_dead_letters_and_one_call_per_pair(
    topic_factory: TopicFactory,
) -> None:
    bootstrap = topic_factory.bootstrap_servers
    partitions = 4
    customers = [f"v{i:03d}" for i in range(60)]
    bad = customers[7]
    workload = build_workload(customers, 3, seed=3, correction_rate=0.3, duplicate_rate=0.05)
    topics = await make_topics(topic_factory, partitions)
    await produce(bootstrap, topics["customers"],
                  [customer_record(c, stripe_id(c) if c != bad else "cus_missing")
                   for c in customers])
    await produce(bootstrap, topics["summaries"], list(workload.records))
    registry = CollectorRegistry()
    rate = 400.0
    config = FakeStripeConfig(meters=FAKE_METERS, seed=9, faults=FAULTS,
                              customers=frozenset(stripe_id(c) for c in customers))
    async with FakeStripe(config) as fake:
        settings = make_settings(bootstrap, topics, "v1", rate, fake.url)
        client = make_meter_event_client(settings.stripe)
        sink = StripeSink(settings, client, metrics=SinkMetrics(registry))
        started = time.monotonic()
        task = asyncio.create_task(sink.run())

        async def alive() -> None:
            if task.done():
                task.result()

        try:
            await wait_for(lambda: sink.running.is_set(), 60, "the sink to start", check=alive)
            await wait_for(lambda: sink.pending == 0 and registry.get_sample_value(
                "meterstream_sink_summaries_total", {"outcome": "sent"}) is not None, 240,
                "every summary to finish", check=alive)
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.5)
        finally:
            sink.stop()
            await task
            await client.aclose()
        stats = fake.stats
        print(f"\nv1: {workload.summaries} summaries, {len(workload.identifiers)} events in "
              f"{elapsed:.1f} s; fake stats {stats}")

        assert_totals(fake, workload.expected, skip_customers={stripe_id(bad)})
        assert stats["max_pair_concurrency"] == 1
        assert int(stats["max_rate_per_s"]) <= rate * RATE_TOLERANCE + 1  # type: ignore[call-overload]

        dead = [orjson.loads(r.value) for r in await read_back(bootstrap, topics["dlq"])]
        bad_ids = {parse_summary(raw).id for key, raw in workload.records
                   if key == bad.encode()}
        dead_ids = {parse_summary(base64.b64decode(d["original_b64"])).id for d in dead}
        # Every summary of the bad customer that carries a value was refused by Stripe.
        sent_bad = {i for i in bad_ids if any(
            ident.startswith(i) for ident in workload.identifiers)}
        assert sent_bad and dead_ids == sent_bad
        for d in dead:
            assert d["schema"] == "dead_letter.v1" and d["stage"] == "sink"
            assert d["reason"] == "stripe_rejected" and "No such customer" in d["detail"]
            assert d["source"]["topic"] == topics["summaries"] and d["source"]["key"] == bad
            assert "sk_test" not in d["detail"]
        assert registry.get_sample_value("meterstream_sink_dlq_total",
                                          {"reason": "stripe_rejected"}) == len(dead)
        committed, ends = await committed_offsets(bootstrap, sink.group_id,
                                                  topics["summaries"], partitions)
        assert committed == ends

        fake.set_faults(Faults())
        differing: set[tuple[str, str]] = set()
        for period in sorted(workload.periods):
            out = io.StringIO()
            result = await reconcile(settings, period, out=out)
            differing |= {(d.customer, d.meter) for d in result.differences}
            if result.differences:
                assert result.exit_code == 1 and "difference" in out.getvalue()
        want = {(bad, m.name) for m in METERS
                if workload.expected.get((stripe_id(bad), m.stripe_event_name))}
        assert differing == want


@pytest.fixture(autouse=True)
def _quiet_sink_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="streams.sink.dispatch")
