"""The Metronome engine (metronome-sdk) against the fake Metronome: request shape and
limits, dedup, error translation, the fake's agreement with the SDK's types, the
dispatcher under seeded faults judged by the fake's ledger, and reconcile's read."""

from __future__ import annotations

import asyncio
import random
import typing
from decimal import Decimal
from typing import Required

import httpx
import orjson
import pytest
import typing_extensions
from metronome.types.v1.usage_ingest_params import Usage
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError

from streams.config import load_settings
from streams.core.money import EXACT
from streams.core.summaries import summary_id
from streams.errors import ConfigError, PermanentSinkError, RetryableSinkError
from streams.fakes.metronome import (
    FakeCustomer,
    FakeMetronome,
    FakeMetronomeConfig,
    Faults,
)
from streams.fakes.metronome.api import OPTIONAL, REQUIRED
from streams.sink.customers import parse_customer_record
from streams.sink.dispatch import Dispatcher, Work
from streams.sink.engines import engine_meters, engine_problems, make_client, sink_group_id
from streams.sink.engines.metronome import (
    MetronomeClient,
    fetch_metronome_totals,
    rfc3339,
    usage_event,
)
from streams.sink.kafka_io import Source
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent
from streams.sink.offsets import PartitionOffsets
from streams.sink.plan import METRONOME_LIMITS, Summary
from streams.sink.ratelimit import TokenBucket
from streams.util.backoff import Backoff

TOKEN = "mtr_test_" + "s3cr3t" * 4
HOUR_MS = 3_600_000
NOW_S = 1_795_000_000
NOW_MS = NOW_S * 1000


def _fixed_clock() -> float:
    return float(NOW_S)


def event(i: int, value: str = "1.5", customer: str = "acct_1", meter: str = "cpu_seconds",
          ts: int = NOW_S - 3600) -> MeterEvent:
    return MeterEvent(identifier=f"ms1_{i:040x}", event_name=meter, stripe_customer_id=customer,
                      value=Decimal(value), timestamp_s=ts, customer=customer, meter=meter)


def client_for(fake: FakeMetronome, **kw: object) -> MetronomeClient:
    return MetronomeClient(api_token=TOKEN, api_base=fake.url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> typing.AsyncIterator[FakeMetronome]:
    # The fake's clock is pinned to the events' time: Metronome's limits (24 h ahead, 34
    # days back) are judged against it, and a wall clock would move the events out of them.
    async with FakeMetronome(FakeMetronomeConfig(api_token=TOKEN, seed=3,
                                                 clock=_fixed_clock)) as f:
        yield f


async def test_a_batch_of_100_exact_values_lands_once(fake: FakeMetronome) -> None:
    client = client_for(fake)
    big = "120999999999999879.00000000000012"  # issue #13's total: no 15-digit limit here
    events = [event(i, big if i == 0 else "0.000000000000001") for i in range(100)]
    await client.send(events)
    await client.send(events)  # a resend: Metronome ignores known transaction ids (200)
    await client.aclose()
    assert fake.ledger.accepted_count == 100
    assert fake.ledger.duplicates_ignored == 100
    want = EXACT.add(Decimal(big), Decimal("0.000000000000099"))
    assert fake.ledger.totals() == {("acct_1", "cpu_seconds"): want}
    sent = fake.ledger.events["ms1_" + "0" * 40]
    assert sent.properties == {"value": big}
    assert sent.timestamp_s == NOW_S - 3600


async def test_more_than_100_events_never_leave_the_client(fake: FakeMetronome) -> None:
    client = client_for(fake)
    with pytest.raises(ValueError, match="at most 100"):
        await client.send([event(i) for i in range(101)])
    await client.aclose()
    with pytest.raises(ValueError, match=r"1\.\.100"):
        client_for(fake, max_batch=101)
    # And the fake refuses such a request on the wire.
    body = orjson.dumps([usage_event(event(i)) for i in range(101)])
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{fake.url}/v1/ingest", content=body,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 400 and "1 to 100" in resp.json()["message"]


def test_usage_event_is_the_sdk_type() -> None:
    e = usage_event(event(1, "12.50"), "value")
    TypeAdapter(Usage).validate_python(e, strict=True)
    assert e == {"transaction_id": "ms1_" + f"{1:040x}", "customer_id": "acct_1",
                 "event_type": "cpu_seconds", "timestamp": rfc3339(NOW_S - 3600),
                 "properties": {"value": "12.5"}}
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


async def test_the_fakes_validation_agrees_with_the_sdk_types(fake: FakeMetronome) -> None:
    """Shape variations of one event (a field missing, of another type, or unknown): the
    fake accepts exactly those that metronome-sdk's ``Usage`` TypedDict types as valid."""
    hints = typing_extensions.get_type_hints(Usage, include_extras=True)
    required = {k for k, t in hints.items() if typing_extensions.get_origin(t) is Required}
    assert set(REQUIRED) == required
    assert set(OPTIONAL) == set(hints) - required
    adapter = TypeAdapter(Usage)
    known = set(hints)
    base = dict(usage_event(event(7)))
    variants: list[dict[str, object]] = [base]
    for name in list(base):
        variants.append({k: v for k, v in base.items() if k != name})
        for wrong in (12, None, ["x"], {"a": "b"}):
            variants.append({**base, name: wrong})
    variants.append({**base, "unknown_field": "x"})
    variants.append({k: v for k, v in base.items() if k != "properties"})
    checked = {True: 0, False: 0}
    async with httpx.AsyncClient() as http:
        for n, v in enumerate(variants):
            v = {**v, "transaction_id": f"t{n}"} if isinstance(v.get("transaction_id"),
                                                                str) else v
            try:
                adapter.validate_python(v, strict=True)
                typed = set(v) <= known
            except ValidationError:
                typed = False
            resp = await http.post(f"{fake.url}/v1/ingest", content=orjson.dumps([v]),
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            assert (resp.status_code == 200) == typed, (v, resp.status_code, resp.text)
            checked[typed] += 1
    assert checked[True] >= 2 and checked[False] >= 15, checked


@pytest.mark.parametrize(("fault", "expected"), [
    ({"rate_429": 1.0, "retry_after_s": 2.0}, RetryableSinkError),
    ({"rate_500": 1.0}, RetryableSinkError),
    ({"rate_drop": 1.0}, RetryableSinkError),
    ({"rate_timeout": 1.0, "timeout_hold_s": 2.0}, RetryableSinkError),
])
async def test_transient_errors_are_retryable(fake: FakeMetronome, fault: dict[str, float],
                                              expected: type[Exception]) -> None:
    fake.set_faults(Faults(**fault))  # type: ignore[arg-type]
    client = client_for(fake, timeout_s=0.5)
    with pytest.raises(expected) as info:
        await client.send([event(1)])
    await client.aclose()
    if "retry_after_s" in fault:
        assert info.value.retry_after_s == 2.0  # type: ignore[attr-defined]
    assert TOKEN not in str(info.value)


async def test_refusals_are_permanent_with_the_reason(fake: FakeMetronome) -> None:
    client = client_for(fake)
    with pytest.raises(PermanentSinkError) as info:
        await client.send([event(1, ts=NOW_S + 3 * 86_400 + 10**6)])  # > 24 h ahead
    assert info.value.status == 400 and "24 hours in the future" in str(info.value)
    await client.aclose()
    wrong = MetronomeClient(api_token="mtr_wrong_token", api_base=fake.url)
    with pytest.raises(PermanentSinkError) as auth:
        await wrong.send([event(2)])
    await wrong.aclose()
    assert auth.value.status == 401 and "mtr_wrong_token" not in str(auth.value)
    assert fake.ledger.accepted_count == 0


async def test_unknown_customers_are_accepted_but_match_nobody() -> None:
    config = FakeMetronomeConfig(customers=(FakeCustomer("c-uuid-1", ingest_aliases=("acct_1",)),),
                                 clock=_fixed_clock)
    async with FakeMetronome(config) as fake:
        client = client_for(fake)
        await client.send([event(1, customer="acct_1"), event(2, customer="c-uuid-1"),
                           event(3, customer="nobody")])
        await client.aclose()
        assert fake.ledger.unmatched == 1
        assert fake.ledger.totals() == {("c-uuid-1", "cpu_seconds"): Decimal("3.0")}


async def test_fetch_totals_resolves_aliases_and_reads_exact_usage() -> None:
    config = FakeMetronomeConfig(customers=(FakeCustomer("c-uuid-1", ingest_aliases=("acct_1",)),
                                            FakeCustomer("c-uuid-2")))
    period_start = 1_793_491_200  # 2026-11-01T00:00:00Z
    async with FakeMetronome(config) as fake:
        fake.set_clock(lambda: period_start + 10 * 86_400.0)
        client = client_for(fake)
        ts = period_start + 86_400
        await client.send([event(1, "0.1", "acct_1", ts=ts), event(2, "0.2", "acct_1", ts=ts),
                           event(3, "7", "c-uuid-2", meter="gpu_seconds", ts=ts),
                           event(4, "99", "c-uuid-2", ts=period_start - 1)])  # October
        await client.aclose()
        s = load_settings(sink={"engine": "metronome"},
                          metronome={"api_token": TOKEN, "api_base": fake.url})
        totals = await fetch_metronome_totals(
            s.metronome, period_start_s=period_start, period_end_s=period_start + 30 * 86_400,
            customers={"a": "acct_1", "b": "c-uuid-2"},
            meters={"cpu_seconds": "cpu_seconds", "gpu_seconds": "gpu_seconds"})
        assert totals == {("a", "cpu_seconds"): Decimal("0.3"), ("a", "gpu_seconds"): 0,
                          ("b", "cpu_seconds"): 0, ("b", "gpu_seconds"): Decimal("7")}
        with pytest.raises(PermanentSinkError, match="no Metronome billable metric"):
            await fetch_metronome_totals(
                s.metronome, period_start_s=period_start,
                period_end_s=period_start + 30 * 86_400, customers={"a": "acct_1"},
                meters={"disk": "disk_gb"})


def test_customer_records_map_to_the_engines_id() -> None:
    record = orjson.dumps({"schema": "customer.v1", "customer": "c1",
                           "stripe_customer_id": "cus_1", "metronome_ingest_alias": "acct_1"})
    assert parse_customer_record(b"c1", record, "stripe") == ("c1", "cus_1")
    assert parse_customer_record(b"c1", record, "metronome") == ("c1", "acct_1")
    both = orjson.dumps({"schema": "customer.v1", "customer": "c1",
                         "metronome_ingest_alias": "acct_1", "metronome_customer_id": "uuid-1"})
    assert parse_customer_record(b"c1", both, "metronome") == ("c1", "uuid-1")
    stripe_only = orjson.dumps({"schema": "customer.v1", "customer": "c1",
                                "stripe_customer_id": "cus_1"})
    # No Metronome id: the Metronome sink holds this customer's summaries.
    assert parse_customer_record(b"c1", stripe_only, "metronome") == ("c1", None)


def test_engine_settings_and_start_checks() -> None:
    s = load_settings(sink={"engine": "metronome"},
                      metronome={"event_types": {"cpu_seconds": "compute.cpu"}})
    assert engine_meters(s)["cpu_seconds"].stripe_event_name == "compute.cpu"
    assert sink_group_id(s) == "meterstream-sink-metronome"
    assert sink_group_id(load_settings()) == "meterstream-sink"
    with pytest.raises(ConfigError, match="METERSTREAM_METRONOME__API_TOKEN"):
        make_client(s)
    maxed = load_settings(sink={"engine": "metronome"}, metronome={"api_base": "http://x"},
                          meters=[{"name": "peak", "stripe_event_name": "peak",
                                   "aggregation": "max", "stripe_window": "hour"}])
    assert any("'max'" in p for p in engine_problems(maxed))
    with pytest.raises(ConfigError, match="METRONOME__EVENT_TYPES"):
        load_settings(metronome={"event_types": {"nope": "x"}})
    secret = load_settings(metronome={"api_token": TOKEN})
    assert TOKEN not in repr(secret) and TOKEN not in str(secret.redacted())


async def test_dispatcher_under_seeded_faults_bills_exactly_once() -> None:
    """The sink's dispatcher with the real client against the fake with 429, 500,
    timeouts and drops (applied or not): the ledger equals the sum of the summaries'
    deltas per (customer, meter), and each transaction id is accepted once."""
    faults = Faults(rate_429=0.15, rate_500=0.1, rate_timeout=0.05, rate_drop=0.05,
                    timeout_hold_s=0.6, retry_after_s=0.01)
    async with FakeMetronome(FakeMetronomeConfig(api_token=TOKEN, seed=11, faults=faults,
                                                 clock=_fixed_clock)) as fake:
        client = client_for(fake, timeout_s=0.3)
        rng = random.Random(5)
        tracker = PartitionOffsets()
        works: list[Work] = []
        want: dict[tuple[str, str], Decimal] = {}
        meters = engine_meters(load_settings(sink={"engine": "metronome"}))
        for offset in range(600):
            customer = f"acct_{rng.randrange(40)}"
            meter = rng.choice(["cpu_seconds", "gpu_seconds"])
            start = NOW_MS - NOW_MS % HOUR_MS - rng.randrange(1, 48) * HOUR_MS
            delta = Decimal(rng.randrange(1, 10**6)) / 1000
            seq = offset  # distinct ids: a correction per summary
            s = Summary(summary_id(customer, meter, start, seq), customer, meter, start,
                        start + HOUR_MS, seq, delta, delta, 1)
            tracker.track(offset)
            works.append(Work(s, b"{}", Source("usage.summaries", 0, offset, customer),
                              stripe_customer_id=customer, owner=tracker))
            want[(customer, meter)] = EXACT.add(want.get((customer, meter), Decimal(0)), delta)
        dead: list[str] = []

        async def dead_letter(work: Work, reason: str, detail: str) -> None:
            dead.append(reason)

        d = Dispatcher(client, meters, on_finished=lambda w, o: tracker.finish(w.source.offset),
                       dead_letter=dead_letter, metrics=SinkMetrics(CollectorRegistry()),
                       bucket=TokenBucket(10_000, 100), max_concurrency=8, call_timeout_s=5,
                       client_timeout_s=0.3, backoff=Backoff(base_s=0.01, cap_s=0.05),
                       clock_ms=lambda: NOW_MS, limits=METRONOME_LIMITS)
        loop = asyncio.create_task(d.run())
        for w in works:
            d.submit(w)
        for _ in range(3000):
            if tracker.unfinished() == 0:
                break
            await asyncio.sleep(0.02)
        await d.close(1.0)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await client.aclose()
        stats = fake.stats
        assert tracker.unfinished() == 0 and dead == []
        assert fake.ledger.totals() == want
        assert fake.ledger.accepted_count == 600
        assert all(stats["faults"][k] > 0 for k in ("429", "500", "timeout", "drop")), stats
        assert client.requests_sent < 600  # batched: many summaries per request


def test_a_metronome_sink_without_a_token_stops_at_start_naming_the_setting() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env["METERSTREAM_SINK__ENGINE"] = "metronome"
    done = subprocess.run([sys.executable, "-m", "streams", "sink", "--metrics-port", "0"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "METERSTREAM_METRONOME__API_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_fake_has_help_and_parses_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.fakes.metronome.__main__ import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--fault-429", "--fault-timeout", "--fault-drop", "--customer", "--metric",
                   "--api-token", "/_fake/"):
        assert option in text
    config = parse_args(["--port", "0", "--fault-429", "0.1", "--customer", "uuid-1:a,b",
                         "--metric", "bm_1:disk:disk_gb:COUNT", "--seed", "4"])
    assert config.faults.rate_429 == 0.1 and config.seed == 4
    assert config.customers == (FakeCustomer("uuid-1", ingest_aliases=("a", "b")),)
    assert config.billable_metrics[0].aggregation_type == "COUNT"
