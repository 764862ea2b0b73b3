"""The fake Stripe server: ledger, Stripe's validation rules, faults, limits, v2 sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest

from streams.fakes.stripe import FakeStripe, FakeStripeConfig, Faults, ManualClock, MeterConfig

KEY = "sk_test_fakestripe_unit"
NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def form(identifier: str, value: str = "1", *, customer: str = "cus_1",
         event_name: str = "cpu_seconds", timestamp: int | None = int(NOW)) -> dict[str, str]:
    data = {"event_name": event_name, "payload[stripe_customer_id]": customer,
            "payload[value]": value, "identifier": identifier}
    if timestamp is not None:
        data["timestamp"] = str(timestamp)
    return data


async def post(http: aiohttp.ClientSession, fake: FakeStripe, data: dict[str, str],
               headers: dict[str, str] | None = None,
               timeout_s: float = 5.0) -> tuple[int, Any, Any]:
    async with http.post(f"{fake.url}/v1/billing/meter_events", data=data,
                         headers=AUTH if headers is None else headers,
                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


def clocked(**kw: Any) -> FakeStripeConfig:
    return FakeStripeConfig(clock=ManualClock(NOW), **kw)


async def test_ledger_is_exact_and_identifiers_unique(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        for i, v in enumerate(["0.1", "0.2", "12.000000000001"]):
            status, body, _ = await post(http, fake, form(f"ev-{i}", v))
            assert status == 200, body
        assert body["object"] == "billing.meter_event"
        assert body["payload"] == {"stripe_customer_id": "cus_1", "value": "12.000000000001"}
        assert body["livemode"] is False and body["timestamp"] == int(NOW)

        status, body, headers = await post(http, fake, form("ev-1", "0.2"))
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"] == "An event already exists with identifier ev-1."
        assert headers["Stripe-Should-Retry"] == "false"

        assert fake.ledger.total("cus_1", "cpu_seconds") == Decimal("12.300000000001")
        assert fake.ledger.accepted_count == 3
        assert fake.ledger.duplicates_rejected == 1
        assert fake.ledger.identifiers == {"ev-0", "ev-1", "ev-2"}
        async with http.get(f"{fake.url}/_fake/ledger") as resp:
            snap = await resp.json()
        assert snap["totals"] == [
            {"customer": "cus_1", "event_name": "cpu_seconds", "total": "12.300000000001"}
        ]
        assert fake.stats["status_counts"] == {"200": 3, "400": 1}


async def test_auth_is_required(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        status, body, _ = await post(http, fake, form("a"), headers={})
        assert status == 401 and "API key" in body["error"]["message"]
        live = {"Authorization": "Bearer sk_live_abcdefghijklmnop"}
        status, body, _ = await post(http, fake, form("a"), headers=live)
        assert status == 401 and "abcdefghijklmnop" not in body["error"]["message"]
        assert fake.ledger.accepted_count == 0


async def test_timestamp_limits_follow_the_fake_clock(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        oldest, latest = int(NOW) - 35 * 86_400, int(NOW) + 300
        assert (await post(http, fake, form("old-ok", timestamp=oldest)))[0] == 200
        assert (await post(http, fake, form("new-ok", timestamp=latest)))[0] == 200
        status, body, _ = await post(http, fake, form("old", timestamp=oldest - 1))
        assert status == 400 and body["error"]["code"] == "timestamp_too_far_in_past"
        status, body, _ = await post(http, fake, form("new", timestamp=latest + 1))
        assert status == 400 and body["error"]["code"] == "timestamp_in_future"
        status, body, _ = await post(http, fake, form("bad", timestamp=None) | {"timestamp": "x"})
        assert status == 400 and body["error"]["param"] == "timestamp"
        # Without a timestamp the event is stamped with the fake's now.
        status, body, _ = await post(http, fake, form("now", timestamp=None))
        assert status == 200 and body["timestamp"] == int(NOW)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1234567890123456", "meter_event_value_too_many_digits"),
        ("1e3", "meter_event_invalid_value"),
        ("1.5.1", "meter_event_invalid_value"),
        ("NaN", "meter_event_invalid_value"),
    ],
)
async def test_value_rules(http: aiohttp.ClientSession, value: str, code: str) -> None:
    async with FakeStripe(clocked()) as fake:
        status, body, _ = await post(http, fake, form("v", value))
        assert status == 400 and body["error"]["code"] == code
        # 15 significant digits pass; leading zeros and trailing fraction zeros don't count.
        assert (await post(http, fake, form("ok", "0.00123456789012345000")))[0] == 200


async def test_negative_values_follow_the_config(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        assert (await post(http, fake, form("neg", "-2.5")))[0] == 200
    async with FakeStripe(clocked(allow_negative_values=False)) as fake:
        status, body, _ = await post(http, fake, form("neg", "-2.5"))
        assert status == 400 and body["error"]["code"] == "meter_event_invalid_value"


async def test_strict_and_lenient_event_validation(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        status, body, _ = await post(http, fake, form("x", event_name="nope"))
        assert status == 400 and body["error"]["code"] == "no_meter"
        status, body, _ = await post(http, fake, form("y", customer=""))
        assert status == 400 and body["error"]["code"] == "meter_event_no_customer_defined"
    async with FakeStripe(clocked(strict=False)) as fake:
        # Stripe accepts these and reports them asynchronously.
        assert (await post(http, fake, form("x", event_name="nope")))[0] == 200
        assert [r.code for r in fake.state.error_reports] == ["no_meter"]
        assert fake.ledger.accepted_count == 0


async def _statuses(seed: int, n: int,
                    http: aiohttp.ClientSession) -> tuple[list[str], list[str]]:
    """(the faults the fake drew, what the client saw) for ``n`` requests."""
    faults = Faults(rate_429=0.25, rate_500=0.25, rate_timeout=0.1, rate_drop=0.1,
                    timeout_hold_s=1.0)
    out = []
    async with FakeStripe(clocked(seed=seed, faults=faults)) as fake:
        for i in range(n):
            try:
                # The client waits less than the fake holds a timeout, and long enough
                # that a loaded machine does not turn a clean request into a timeout.
                status, _, _ = await post(http, fake, form(f"e{i}", customer=f"cus_{i}"),
                                          timeout_s=0.5)
                out.append(str(status))
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                out.append("drop")
            except TimeoutError:
                out.append("timeout")
        kinds = [d.kind for d in fake.state.injector.log]
        applied = {d.seq for d in fake.state.injector.log if d.kind != "none" and d.applied}
        accepted = {int(i[1:]) for i in fake.ledger.identifiers}
        # Only clean requests, and timeouts/drops that were applied, reach the ledger.
        assert accepted == {i for i, k in enumerate(kinds) if k == "none"} | {
            i for i in applied if kinds[i] in ("timeout", "drop")
        }
        assert fake.stats["faults"]["drop"] == kinds.count("drop")
    return kinds, out


async def test_fault_injection_is_reproducible(http: aiohttp.ClientSession) -> None:
    kinds, seen = await _statuses(7, 40, http)
    assert (await _statuses(7, 40, http))[0] == kinds
    assert {"200", "429", "500", "timeout", "drop"} <= set(seen)
    assert (await _statuses(8, 40, http))[0] != kinds


@pytest.mark.parametrize("applied", [True, False])
async def test_timeout_may_or_may_not_apply(http: aiohttp.ClientSession, applied: bool) -> None:
    faults = Faults(rate_timeout=1.0, timeout_hold_s=0.5,
                    applied_probability=1.0 if applied else 0.0)
    async with FakeStripe(clocked(faults=faults)) as fake:
        with pytest.raises(TimeoutError):
            await post(http, fake, form("t"), timeout_s=0.1)
        assert fake.ledger.has("t") is applied


async def test_one_request_in_flight_per_customer_and_meter(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked(faults=Faults(latency_s=0.3))) as fake:
        same = await asyncio.gather(*(post(http, fake, form(f"s{i}")) for i in range(2)))
        assert sorted(s for s, _, _ in same) == [200, 429]
        limited = next(r for r in same if r[0] == 429)
        assert limited[1]["error"]["type"] == "rate_limit_error"
        assert limited[2]["Stripe-Rate-Limited-Reason"] == "resource-specific"
        others = await asyncio.gather(
            *(post(http, fake, form(f"o{i}", customer=f"cus_{i}")) for i in range(3))
        )
        assert [s for s, _, _ in others] == [200, 200, 200]
        stats = fake.stats
        assert stats["max_pair_concurrency"] == 2
        assert stats["max_concurrency"] >= 3
        assert stats["inflight_rejections"] == 1
        assert stats["max_rate_per_s"] >= 5


async def test_v2_session_expiry_and_duplicates(http: aiohttp.ClientSession) -> None:
    clock = ManualClock(NOW)
    async with FakeStripe(FakeStripeConfig(clock=clock)) as fake:
        async with http.post(f"{fake.url}/v2/billing/meter_event_session", headers=AUTH) as r:
            session = await r.json()
        assert session["object"] == "v2.billing.meter_event_session"
        assert session["expires_at"] == "2026-11-18T11:21:40.000Z"
        token = {"Authorization": f"Bearer {session['authentication_token']}"}
        event = {"event_name": "cpu_seconds", "identifier": "v2-a",
                 "payload": {"stripe_customer_id": "cus_1", "value": "2.5"},
                 "timestamp": "2026-11-18T11:00:00Z"}
        url = f"{fake.url}/v2/billing/meter_event_stream"
        for _ in range(2):
            async with http.post(url, json={"events": [event]}, headers=token) as r:
                assert r.status == 200
        assert fake.ledger.total("cus_1", "cpu_seconds") == Decimal("2.5")
        assert fake.ledger.duplicates_rejected == 1
        async with http.post(url, json={"events": [event] * 101}, headers=token) as r:
            assert r.status == 400
        clock.advance(15 * 60)
        async with http.post(url, json={"events": [event]}, headers=token) as r:
            body = await r.json()
            assert r.status == 401
        assert body["error"]["code"] == "billing_meter_event_session_expired"
        assert body["error"]["type"] == "temporary_session_expired"


async def test_pre_aggregated_meter_latest_received_wins(http: aiohttp.ClientSession) -> None:
    meters = (MeterConfig(id="mtr_gpu", event_name="gpu_max", formula="sum",
                          event_time_window="hour"),)
    hour = int(NOW) - int(NOW) % 3600 - 3600
    async with FakeStripe(clocked(meters=meters)) as fake:
        for ident, value, ts in [("a", "5", hour + 10), ("b", "3", hour + 5),
                                 ("c", "7", hour + 3600)]:
            data = form(ident, value, event_name="gpu_max", timestamp=ts)
            assert (await post(http, fake, data))[0] == 200
        assert fake.ledger.window_totals("cus_1", "gpu_max") == {
            hour: Decimal(3), hour + 3600: Decimal(7)
        }
        assert fake.ledger.total("cus_1", "gpu_max") == Decimal(10)
        query = {"customer": "cus_1", "start_time": str(hour), "end_time": str(hour + 7200),
                 "value_grouping_window": "hour"}
        async with http.get(f"{fake.url}/v1/billing/meters/mtr_gpu/event_summaries",
                            params=query, headers=AUTH) as r:
            page = orjson.loads(await r.read())
        assert [(s["start_time"], s["aggregated_value"]) for s in page["data"]] == [
            (hour + 3600, 7), (hour, 3)
        ]


async def test_summaries_are_exact_numbers_and_cancel_works(http: aiohttp.ClientSession) -> None:
    clock = ManualClock(NOW)
    async with FakeStripe(FakeStripeConfig(clock=clock)) as fake:
        for i, v in enumerate(["0.1", "0.2", "100000000000000"]):
            assert (await post(http, fake, form(f"e{i}", v)))[0] == 200
        url = f"{fake.url}/v1/billing/meters/mtr_fake_cpu_seconds/event_summaries"
        end = int(NOW) + 60 - int(NOW) % 60
        query = {"customer": "cus_1", "start_time": "0", "end_time": str(end)}
        async with http.get(url, params=query, headers=AUTH) as r:
            raw = await r.read()
        assert b'"aggregated_value":100000000000000.3' in raw
        cancel = {"event_name": "cpu_seconds", "type": "cancel", "cancel[identifier]": "e2"}
        adj_url = f"{fake.url}/v1/billing/meter_event_adjustments"
        async with http.post(adj_url, data=cancel, headers=AUTH) as r:
            assert r.status == 200 and (await r.json())["status"] == "pending"
        assert fake.ledger.total("cus_1", "cpu_seconds") == Decimal("0.3")
        clock.advance(24 * 3600 + 1)
        cancel["cancel[identifier]"] = "e1"
        async with http.post(adj_url, data=cancel, headers=AUTH) as r:
            assert r.status == 400
        async with http.get(f"{fake.url}/v1/billing/meters", params={"limit": "2"},
                            headers=AUTH) as r:
            page = await r.json()
        assert page["has_more"] is True and len(page["data"]) == 2


async def test_down_switch_and_admin_faults(http: aiohttp.ClientSession) -> None:
    async with FakeStripe(clocked()) as fake:
        await fake.set_down("503")
        assert (await post(http, fake, form("d1")))[0] == 503
        await fake.set_down("refuse")
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(http, fake, form("d2"))
        await fake.set_down("up")
        assert (await post(http, fake, form("d3")))[0] == 200
        async with http.post(f"{fake.url}/_fake/faults", json={"rate_429": 1.0}) as r:
            assert r.status == 200
        assert (await post(http, fake, form("d4")))[0] == 429
        async with http.post(f"{fake.url}/_fake/faults", json={"rate_429": 2.0}) as r:
            assert r.status == 400
        async with http.post(f"{fake.url}/_fake/down", json={"mode": "503", "for_s": 0.2}) as r:
            assert r.status == 200
        fake.set_faults(Faults())
        assert (await post(http, fake, form("d5")))[0] == 503
        await asyncio.sleep(0.4)
        assert (await post(http, fake, form("d6")))[0] == 200


async def test_runs_as_a_process(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.fakes.stripe", "--port", "0", "--fault-429", "1.0",
        "--seed", "3", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("fakestripe listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        async with http.post(f"{url}/v1/billing/meter_events", data=form("p"),
                             headers=AUTH) as r:
            assert r.status == 429
        async with http.get(f"{url}/_fake/stats") as r:
            assert (await r.json())["status_counts"] == {"429": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
