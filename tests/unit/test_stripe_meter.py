"""The Stripe MeterEventClients against the in-process fake Stripe (real HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from streams.config import StripeSettings
from streams.errors import PermanentSinkError, RetryableSinkError
from streams.fakes.stripe import FakeStripe, FakeStripeConfig, Faults, ManualClock
from streams.sink.engines.stripe_meter import (
    DryRunClient,
    StripeV1Client,
    StripeV2StreamClient,
    fetch_stripe_totals,
    make_meter_event_client,
)
from streams.sink.engines.stripe_requests import format_value, idempotency_key
from streams.sink.model import MeterEvent

KEY = "sk_test_meterstream_unit_0123456789"
TS = int(time.time()) - 60  # one fixed event time: a resent event is the same request


def ev(identifier: str, value: str = "1.5", *, customer: str = "c-1",
       event_name: str = "cpu_seconds", ts: int | None = None) -> MeterEvent:
    return MeterEvent(identifier=identifier, event_name=event_name,
                      stripe_customer_id=f"cus_{customer}", value=Decimal(value),
                      timestamp_s=TS if ts is None else ts,
                      customer=customer, meter="cpu_seconds")


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe(FakeStripeConfig(api_key=KEY)) as server:
        yield server


@pytest.fixture
async def v1(fake: FakeStripe) -> AsyncIterator[StripeV1Client]:
    client = StripeV1Client(api_key=KEY, api_base=fake.url, timeout_s=0.5)
    yield client
    await client.aclose()


async def test_v1_sends_exact_value_with_idempotency_key(
    fake: FakeStripe, v1: StripeV1Client
) -> None:
    await v1.send([ev("id-1", "0.1")])
    await v1.send([ev("id-2", "0.20")])
    assert fake.ledger.total("cus_c-1", "cpu_seconds") == Decimal("0.3")
    assert set(fake.state.idempotency) == {idempotency_key("id-1"), idempotency_key("id-2")}
    with pytest.raises(ValueError, match="at most 1"):
        await v1.send([ev("a"), ev("b")])


async def test_v1_duplicate_identifier_is_success(fake: FakeStripe, v1: StripeV1Client) -> None:
    await v1.send([ev("dup")])
    await v1.send([ev("dup")])  # same Idempotency-Key: Stripe replays the first answer
    fake.state.idempotency.clear()
    await v1.send([ev("dup")])  # new key: Stripe answers 400 "already exists"
    assert fake.ledger.accepted_count == 1
    assert fake.ledger.duplicates_rejected == 1
    assert fake.ledger.total("cus_c-1", "cpu_seconds") == Decimal("1.5")


async def test_v1_429_is_retryable_with_retry_after(fake: FakeStripe, v1: StripeV1Client) -> None:
    fake.set_faults(Faults(rate_429=1.0, retry_after_s=2.5))
    with pytest.raises(RetryableSinkError) as info:
        await v1.send([ev("r")])
    assert info.value.retry_after_s == 2.5
    assert KEY not in str(info.value)
    fake.set_faults(Faults())
    await v1.send([ev("r")])
    assert fake.ledger.has("r")


async def test_v1_500_is_retryable_and_the_retry_is_not_a_replayed_500(
    fake: FakeStripe, v1: StripeV1Client
) -> None:
    fake.set_faults(Faults(rate_500=1.0))
    with pytest.raises(RetryableSinkError):
        await v1.send([ev("f")])
    # Stripe saved that 500 under the Idempotency-Key; the retry must use another key.
    assert idempotency_key("f") in fake.state.idempotency
    fake.set_faults(Faults())
    await v1.send([ev("f")])
    assert fake.ledger.has("f")


@pytest.mark.parametrize("kind", ["timeout", "drop"])
@pytest.mark.parametrize("applied", [True, False])
async def test_v1_timeout_and_drop_are_retryable_and_resend_is_exact(
    fake: FakeStripe, v1: StripeV1Client, kind: str, applied: bool
) -> None:
    rates = {"rate_timeout": 1.0} if kind == "timeout" else {"rate_drop": 1.0}
    fake.set_faults(Faults(timeout_hold_s=1.0, applied_probability=float(applied), **rates))
    with pytest.raises(RetryableSinkError):
        await v1.send([ev("t", "2.5")])
    assert fake.ledger.has("t") is applied
    fake.set_faults(Faults())
    if kind == "timeout" and not applied:
        # Stripe still holds the timed-out request: the pair is in flight, so 429.
        # (When it was applied, its saved answer is replayed for the same key instead.)
        with pytest.raises(RetryableSinkError):
            await v1.send([ev("t", "2.5")])
        await asyncio.sleep(1.2)  # the held request ends after timeout_hold_s
        assert fake.state.stats.in_flight == 0
    await v1.send([ev("t", "2.5")])
    assert fake.ledger.total("cus_c-1", "cpu_seconds") == Decimal("2.5")


async def test_v1_concurrent_call_for_same_pair_is_retryable(fake: FakeStripe) -> None:
    fake.set_faults(Faults(latency_s=0.2))
    client = StripeV1Client(api_key=KEY, api_base=fake.url, timeout_s=2)
    try:
        results = await asyncio.gather(client.send([ev("p1")]), client.send([ev("p2")]),
                                       return_exceptions=True)
    finally:
        await client.aclose()
    assert sum(isinstance(r, RetryableSinkError) for r in results) == 1


async def test_v1_4xx_is_permanent_and_never_shows_the_key(fake: FakeStripe) -> None:
    client = StripeV1Client(api_key=KEY, api_base=fake.url)
    try:
        with pytest.raises(PermanentSinkError) as info:
            await client.send([ev("u", event_name="no_such_meter")])
        assert (info.value.status, info.value.code) == (400, "no_meter")
        old = int(time.time()) - 40 * 86_400
        with pytest.raises(PermanentSinkError) as info:
            await client.send([ev("o", ts=old)])
        assert info.value.code == "timestamp_too_far_in_past"
        with pytest.raises(PermanentSinkError) as info:
            await client.send([ev("big", "1234567890123456")])
        assert info.value.code == "meter_event_value_too_many_digits"
    finally:
        await client.aclose()
    wrong = "sk_test_wrong_key_abcdefghijklmnopq"
    client = StripeV1Client(api_key=wrong, api_base=fake.url)
    try:
        with pytest.raises(PermanentSinkError) as info:
            await client.send([ev("k")])
        assert info.value.status == 401
        assert wrong not in str(info.value) and wrong not in repr(info.value.args)
    finally:
        await client.aclose()


async def test_v1_connection_refused_is_retryable() -> None:
    async with FakeStripe() as server:
        url = server.url
    client = StripeV1Client(api_key=KEY, api_base=url, timeout_s=1)
    try:
        with pytest.raises(RetryableSinkError):
            await client.send([ev("x")])
    finally:
        await client.aclose()


async def test_v2_batches_duplicates_and_errors(fake: FakeStripe) -> None:
    client = StripeV2StreamClient(api_key=KEY, api_base=fake.url, meter_events_base=fake.url,
                                  timeout_s=1)
    try:
        batch = [ev(f"b{i}", "0.01", customer=f"c{i % 7}") for i in range(100)]
        await client.send(batch)
        await client.send(batch[:10])  # duplicates: dropped by Stripe, still success
        assert fake.ledger.accepted_count == 100
        assert fake.ledger.duplicates_rejected == 10
        assert sum(fake.ledger.totals().values()) == Decimal("1.00")
        with pytest.raises(ValueError, match="at most 100"):
            await client.send([ev(f"x{i}") for i in range(101)])
        fake.set_faults(Faults(rate_429=1.0))
        with pytest.raises(RetryableSinkError):
            await client.send([ev("z")])
        fake.set_faults(Faults(rate_500=1.0))
        with pytest.raises(RetryableSinkError):
            await client.send([ev("z")])
        assert client.sessions_created == 1
    finally:
        await client.aclose()


async def test_v2_refreshes_the_session_before_it_expires() -> None:
    clock = ManualClock(time.time())
    async with FakeStripe(FakeStripeConfig(clock=clock)) as server:
        client = StripeV2StreamClient(api_key=KEY, api_base=server.url,
                                      meter_events_base=server.url, clock=clock)
        try:
            await client.send([ev("a")])
            clock.advance(13 * 60)
            await client.send([ev("b")])
            assert client.sessions_created == 1
            clock.advance(60 + 1)  # within 60 s of expiry: renewed before sending
            await client.send([ev("c")])
            assert client.sessions_created == 2
            assert server.stats["status_counts"].get("401") is None
        finally:
            await client.aclose()


async def test_v2_renews_once_on_session_expired() -> None:
    clock = ManualClock(time.time())
    async with FakeStripe(FakeStripeConfig(clock=clock)) as server:
        # The client's clock lags the server's: only the 401 tells it the token expired.
        client = StripeV2StreamClient(api_key=KEY, api_base=server.url,
                                      meter_events_base=server.url, clock=lambda: 0.0)
        try:
            await client.send([ev("a")])
            clock.advance(16 * 60)
            await client.send([ev("b", ts=int(clock()) - 60)])
            assert client.sessions_created == 2
            assert server.stats["status_counts"]["401"] == 1
            assert server.ledger.identifiers == {"a", "b"}
        finally:
            await client.aclose()


async def test_dry_run_writes_the_exact_requests(tmp_path: Path) -> None:
    path = tmp_path / "out" / "requests.jsonl"
    client = DryRunClient(path, api="v1")
    await client.send([ev("d1", "12.50", ts=1_795_000_000)])
    await client.aclose()
    await client.aclose()
    (line,) = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert line == {
        "method": "POST",
        "url": "https://api.stripe.com/v1/billing/meter_events",
        "headers": {"Content-Type": "application/x-www-form-urlencoded",
                    "Idempotency-Key": idempotency_key("d1")},
        "form": [["event_name", "cpu_seconds"], ["payload[stripe_customer_id]", "cus_c-1"],
                 ["payload[value]", "12.5"], ["identifier", "d1"], ["timestamp", "1795000000"]],
        "body": "event_name=cpu_seconds&payload[stripe_customer_id]=cus_c-1"
                "&payload[value]=12.5&identifier=d1&timestamp=1795000000",
    }
    v2 = DryRunClient(path, api="v2", meter_events_base="http://fake:1")
    await v2.send([ev("d2", "1", ts=1_795_000_000), ev("d3", "2", ts=1_795_000_000)])
    await v2.aclose()
    last = orjson.loads(path.read_bytes().splitlines()[-1])
    assert last["url"] == "http://fake:1/v2/billing/meter_event_stream"
    assert [e["identifier"] for e in last["json"]["events"]] == ["d2", "d3"]
    assert last["json"]["events"][0]["timestamp"] == "2026-11-18T11:06:40Z"
    assert v2.max_batch == 100 and client.max_batch == 1


def test_format_value() -> None:
    assert format_value(Decimal("1E+3")) == "1000"
    assert format_value(Decimal("0.000")) == "0"
    assert format_value(Decimal("-0")) == "0"
    assert format_value(Decimal("12.3400")) == "12.34"
    assert format_value(Decimal("123456789012345")) == "123456789012345"
    for bad in ("1234567890123456", "-1", "NaN", "Infinity"):
        with pytest.raises(PermanentSinkError):
            format_value(Decimal(bad))


async def test_factory_and_fetch_totals(fake: FakeStripe, tmp_path: Path) -> None:
    settings = StripeSettings(mode="v1", api_key=SecretStr(KEY), api_base=fake.url)
    client = make_meter_event_client(settings)
    assert isinstance(client, StripeV1Client)
    now = int(time.time())
    try:
        for i, value in enumerate(["0.1", "0.2", "99999999999999.7"]):
            await client.send([ev(f"t{i}", value, ts=now - 120)])
        await client.send([ev("t9", "5", customer="c-2", ts=now - 120)])
    finally:
        await client.aclose()
    end = now - now % 60 + 60
    totals = await fetch_stripe_totals(
        settings, period_start_s=end - 3600, period_end_s=end,
        customers={"c-1": "cus_c-1", "c-2": "cus_c-2", "c-3": "cus_c-3"},
        meters={"cpu_seconds": "cpu_seconds", "gpu_seconds": "gpu_seconds"},
    )
    assert totals[("c-1", "cpu_seconds")] == Decimal("100000000000000.0")
    assert totals[("c-2", "cpu_seconds")] == Decimal(5)
    assert totals[("c-3", "cpu_seconds")] == Decimal(0)
    assert totals[("c-1", "gpu_seconds")] == Decimal(0)
    with pytest.raises(PermanentSinkError, match="no Stripe meter"):
        await fetch_stripe_totals(settings, period_start_s=end - 3600, period_end_s=end,
                                  customers={"c-1": "cus_c-1"}, meters={"x": "nope"})

    v2 = make_meter_event_client(StripeSettings(mode="v2", api_base=fake.url))
    assert isinstance(v2, StripeV2StreamClient) and v2.max_batch == 100
    await v2.aclose()
    # METERSTREAM_STRIPE__BATCH_SIZE caps the events per v2 call (it was read nowhere).
    v2 = make_meter_event_client(StripeSettings(mode="v2", api_base=fake.url, batch_size=20))
    assert isinstance(v2, StripeV2StreamClient) and v2.max_batch == 20
    await v2.aclose()
    dry = make_meter_event_client(StripeSettings(mode="dry-run",
                                                 dry_run_path=tmp_path / "d.jsonl"))
    assert isinstance(dry, DryRunClient)
    await dry.aclose()
