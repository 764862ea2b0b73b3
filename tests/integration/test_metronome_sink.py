"""The sink with the Metronome engine on a real Kafka broker, in-process, against the fake
Metronome: batching under faults, held-not-dropped customers, the commit rule, a
permanent refusal dead-lettered with Metronome's reason, and reconcile (0 differences,
then every difference reported and exit 1)."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.config import (
    KafkaSettings,
    MeterSettings,
    MetronomeSettings,
    Settings,
    SinkSettings,
    TopicSettings,
    WorkerSettings,
)
from streams.core.money import EXACT
from streams.core.summaries import summary_id
from streams.fakes.metronome import (
    FakeCustomer,
    FakeMetronome,
    FakeMetronomeConfig,
    Faults,
)
from streams.sink.engines import make_client
from streams.sink.engines.metronome import MetronomeClient
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent
from streams.sink.reconcile import reconcile
from streams.sink.sink import StripeSink
from streams.testing.readback import read_back
from streams.testing.topics import TopicFactory

HOUR_MS = 3_600_000
TOKEN = "mtr_integration_" + uuid.uuid4().hex
METERS = (
    MeterSettings(name="cpu_seconds", stripe_event_name="cpu_seconds"),
    MeterSettings(name="gpu_seconds", stripe_event_name="gpu_seconds"),
    MeterSettings(name="executions", stripe_event_name="executions", aggregation="count"),
)
FAULTS = Faults(rate_429=0.2, rate_500=0.05, rate_timeout=0.03, rate_drop=0.02,
                timeout_hold_s=0.8, retry_after_s=0.05)


def metronome_id(customer: str) -> str:
    return f"6f1c0000-0000-4000-8000-{customer.encode().hex()[-12:].rjust(12, '0')}"


def alias(customer: str) -> str:
    return f"acct-{customer}"


def summary(customer: str, meter: MeterSettings, start: int, seq: int, total: Decimal,
            delta: Decimal) -> bytes:
    return orjson.dumps({
        "schema": "meter_summary.v1", "id": summary_id(customer, meter.name, start, seq),
        "customer": customer, "meter": meter.name, "aggregation": meter.aggregation,
        "window_start_ms": start, "window_end_ms": start + HOUR_MS, "seq": seq,
        "kind": "final" if seq == 0 else "correction", "total": format(total, "f"),
        "delta": format(delta, "f"), "event_count": 1 + seq,
        "period": time.strftime("%Y-%m", time.gmtime(start / 1000)),
        "emitted_at_ms": start + HOUR_MS,
    })


def customer_record(customer: str, **ids: str) -> tuple[bytes, bytes]:
    return customer.encode(), orjson.dumps({"schema": "customer.v1", "customer": customer,
                                            "stripe_customer_id": f"cus_{customer}", **ids})


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(r.value) for r in await read_back(bootstrap, topic)]


async def committed_all(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
        return committed == ends
    finally:
        await consumer.stop()


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
                   check: Callable[[], Awaitable[None]]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        await check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def make_settings(bootstrap: str, topics: dict[str, str], url: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, client_id="metronome-sink-test"),
        topics=TopicSettings(summaries=topics["summaries"], summaries_dlq=topics["dlq"],
                             customers=topics["customers"]),
        meters=METERS,
        sink=SinkSettings(engine="metronome"),
        metronome=MetronomeSettings(api_token=TOKEN, api_base=url,  # type: ignore[arg-type]
                                    rate_limit_per_s=300, timeout_s=0.5, batch_size=25),
        worker=WorkerSettings(app_id=f"mtest-{uuid.uuid4().hex[:12]}"),
    )


async def make_topics(topic_factory: TopicFactory, partitions: int) -> dict[str, str]:
    return {"summaries": await topic_factory(partitions=partitions),
            "dlq": await topic_factory(partitions=1),
            "customers": await topic_factory(partitions=2, compacted=True)}


async def test_metronome_sink_batches_holds_commits_and_reconciles(
        topic_factory: TopicFactory) -> None:
    bootstrap = topic_factory.bootstrap_servers
    partitions = 4
    rng = random.Random(17)
    customers = [f"m{i:03d}" for i in range(40)]
    held = customers[0]
    now_ms = int(time.time() * 1000)
    first = now_ms - now_ms % HOUR_MS - 8 * HOUR_MS
    records: list[tuple[bytes, bytes]] = []
    expected: dict[tuple[str, str], Decimal] = {}
    sent_ids: set[str] = set()
    for c in customers:
        for meter in METERS:
            for k in range(5):
                start = first + k * HOUR_MS
                running = Decimal(0)
                for seq in range(rng.choice([1, 1, 2, 3])):
                    delta = (Decimal(rng.randint(1, 10**9)) / Decimal(10**rng.randint(0, 6))
                             if meter.aggregation == "sum" else Decimal(rng.randint(1, 50)))
                    if seq == 1 and rng.random() < 0.1:
                        # 40 significant digits: Metronome takes it whole, no parts.
                        delta = Decimal("1234567890123456789012.345678901234567891")
                    running = EXACT.add(running, delta)
                    raw = summary(c, meter, start, seq, running, delta)
                    records.append((c.encode(), raw))
                    if rng.random() < 0.05:
                        records.append((c.encode(), raw))  # a duplicate
                    sent_ids.add(summary_id(c, meter.name, start, seq))
                pair = (metronome_id(c), meter.name)
                expected[pair] = EXACT.add(expected.get(pair, Decimal(0)), running)
    topics = await make_topics(topic_factory, partitions)
    # c001 by Metronome id, the rest by ingest alias; the held customer has only a Stripe id.
    await produce(bootstrap, topics["customers"], [
        customer_record(c, **({"metronome_customer_id": metronome_id(c)} if c == customers[1]
                              else {"metronome_ingest_alias": alias(c)}))
        for c in customers[1:]] + [customer_record(held)])
    await produce(bootstrap, topics["summaries"], records)
    config = FakeMetronomeConfig(
        api_token=TOKEN, seed=5, faults=FAULTS,
        customers=tuple(FakeCustomer(metronome_id(c), ingest_aliases=(alias(c),))
                        for c in customers))
    registry = CollectorRegistry()
    async with FakeMetronome(config) as fake:
        settings = make_settings(bootstrap, topics, fake.url)
        client = make_client(settings)
        assert isinstance(client, MetronomeClient)
        sink = StripeSink(settings, client, metrics=SinkMetrics(registry), held_recheck_s=2.0)
        task = asyncio.create_task(sink.run())

        async def alive() -> None:
            if task.done():
                task.result()

        try:
            await wait_for(lambda: sink.running.is_set(), 60, "the sink to start", alive)
            await wait_for(lambda: sink.held.has(held) and sink.pending == len(sink.held), 180,
                           "every mapped summary to finish", alive)
            assert len(sink.held) > 0
            assert not any(e.customer == metronome_id(held)
                           for e in fake.ledger.events.values())
            await produce(bootstrap, topics["customers"],
                          [customer_record(held, metronome_ingest_alias=alias(held))])
            await wait_for(lambda: sink.pending == 0, 60, "held summaries to be sent", alive)
            await asyncio.sleep(1.5)  # one more commit tick
        finally:
            sink.stop()
            await task
            await client.aclose()
        stats = fake.stats
        print(f"\nmetronome: {len(sent_ids)} summaries, {len(records)} records; {stats}")
        assert fake.ledger.totals() == expected
        assert set(fake.ledger.events) == sent_ids  # each transaction id once, none extra
        assert fake.ledger.unmatched == 0
        assert stats["max_pair_concurrency"] == 1  # one call in flight per (customer, meter)
        assert all(stats["faults"][k] > 0 for k in ("429", "500", "timeout")), stats
        assert stats["requests"] < len(sent_ids) / 5  # batched (25 a request at most)
        assert sink.group_id == f"{settings.worker.app_id}-sink-metronome"
        assert await committed_all(bootstrap, sink.group_id, topics["summaries"], partitions)
        assert await read_all(bootstrap, topics["dlq"]) == []

        fake.set_faults(Faults())
        periods = sorted({time.strftime("%Y-%m", time.gmtime(s / 1000))
                          for s in (first, first + 5 * HOUR_MS)})
        for period in periods:
            out = io.StringIO()
            result = await reconcile(settings, period, out=out)
            assert result.exit_code == 0 and result.compared > 0, out.getvalue()
        # Usage Metronome has and we don't is a difference too: reported, exit 1.
        extra = MetronomeClient(api_token=TOKEN, api_base=fake.url)
        await extra.send([MeterEvent("not-ours-1", "gpu_seconds", alias(customers[5]),
                                     Decimal("2.5"), first // 1000 + 60, customers[5],
                                     "gpu_seconds")])
        await extra.aclose()
        out = io.StringIO()
        result = await reconcile(settings, time.strftime("%Y-%m", time.gmtime(first / 1000)),
                                 out=out)
        assert result.exit_code == 1
        assert [(d.customer, d.meter, d.difference) for d in result.differences] == [
            (customers[5], "gpu_seconds", Decimal("-2.5"))]
        assert f"{customers[5]}\tgpu_seconds\t" in out.getvalue()


async def test_a_refusal_is_dead_lettered_with_metronomes_reason(
        topic_factory: TopicFactory) -> None:
    """Metronome's clock 30 h behind ours: a window 2 h old is more than 24 h in its
    future (400, dead-lettered as metronome_rejected with the message); a window 40 h old
    is billed; both offsets are committed."""
    bootstrap = topic_factory.bootstrap_servers
    now_ms = int(time.time() * 1000)
    hour = now_ms - now_ms % HOUR_MS
    meter = METERS[0]
    fresh = summary("r1", meter, hour - 2 * HOUR_MS, 0, Decimal("4"), Decimal("4"))
    old = summary("r1", meter, hour - 40 * HOUR_MS, 0, Decimal("6"), Decimal("6"))
    topics = await make_topics(topic_factory, 1)
    await produce(bootstrap, topics["customers"],
                  [customer_record("r1", metronome_ingest_alias="acct-r1")])
    await produce(bootstrap, topics["summaries"], [(b"r1", fresh), (b"r1", old)])
    async with FakeMetronome(FakeMetronomeConfig(api_token=TOKEN)) as fake:
        fake.set_clock(lambda: time.time() - 30 * 3600)
        settings = make_settings(bootstrap, topics, fake.url)
        client = make_client(settings)
        registry = CollectorRegistry()
        sink = StripeSink(settings, client, metrics=SinkMetrics(registry))
        task = asyncio.create_task(sink.run())

        async def alive() -> None:
            if task.done():
                task.result()

        try:
            await wait_for(lambda: sink.running.is_set() and fake.ledger.accepted_count == 1
                           and sink.pending == 0, 60, "both summaries to finish", alive)
            await asyncio.sleep(1.5)
        finally:
            sink.stop()
            await task
            await client.aclose()
        assert fake.ledger.totals() == {("acct-r1", "cpu_seconds"): Decimal("6")}
        dead = await read_all(bootstrap, topics["dlq"])
        assert len(dead) == 1
        assert dead[0]["reason"] == "metronome_rejected"
        assert "24 hours in the future" in str(dead[0]["detail"])
        assert TOKEN not in str(dead[0]["detail"])
        assert base64.b64decode(str(dead[0]["original_b64"])) == fresh
        assert registry.get_sample_value("meterstream_sink_dlq_total",
                                         {"reason": "metronome_rejected"}) == 1
        assert await committed_all(bootstrap, sink.group_id, topics["summaries"], 1)
