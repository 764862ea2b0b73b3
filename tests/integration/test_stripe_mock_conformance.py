"""The v1 requests meterstream makes, checked against stripe-mock (Stripe's OpenAPI spec).

stripe-mock validates each request against the spec of the real API, so a 2xx means
Stripe would parse the request the same way. It is stateless: duplicates and totals are
the fake Stripe's job (tests/unit/test_fakestripe.py). It serves v1 only.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from streams.config import StripeSettings
from streams.sink.engines.stripe_meter import DryRunClient, StripeV1Client, fetch_stripe_totals
from streams.sink.engines.stripe_requests import idempotency_key, v1_form
from streams.sink.model import MeterEvent

KEY = "sk_test_123"
_LISTENING = re.compile(rb"Listening for HTTP at address: .*:(\d+)\s*$")


def stripe_mock_binary() -> str:
    candidates = [
        os.environ.get("STRIPE_MOCK_BIN"),
        shutil.which("stripe-mock"),
        str(Path.home() / "go" / "bin" / "stripe-mock"),
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "stripe-mock not found ($STRIPE_MOCK_BIN, PATH, ~/go/bin/stripe-mock). Install it with "
        "`go install github.com/stripe/stripe-mock@latest`."
    )


@pytest.fixture
async def stripe_mock() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        stripe_mock_binary(), "-http-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        port = None
        seen = b""
        deadline = time.monotonic() + 30
        while port is None:
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            if not line:
                pytest.fail(f"stripe-mock exited before listening: {seen.decode()[-500:]}")
            seen += line
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
        drain = asyncio.create_task(proc.stdout.read())  # keep its pipe from filling
        yield f"http://127.0.0.1:{port}"
        proc.terminate()
        await asyncio.wait_for(drain, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _events() -> list[MeterEvent]:
    now = int(time.time())
    return [
        MeterEvent(identifier=f"ms1_conformance_{i}", event_name="cpu_seconds",
                   stripe_customer_id="cus_123", value=Decimal(v), timestamp_s=now - 3600,
                   customer="c-1", meter="cpu_seconds")
        for i, v in enumerate(["12.5", "0", "123456789012345", "0.000000000000001"])
    ]


async def test_stripe_v1_client_requests_are_accepted(stripe_mock: str) -> None:
    client = StripeV1Client(api_key=KEY, api_base=stripe_mock, timeout_s=10)
    try:
        for event in _events():
            await client.send([event])  # raises unless stripe-mock answers 2xx
    finally:
        await client.aclose()


async def test_raw_v1_form_and_dry_run_lines_are_accepted(
    stripe_mock: str, tmp_path: Path
) -> None:
    path = tmp_path / "dry.jsonl"
    dry = DryRunClient(path, api="v1", api_base=stripe_mock)
    for event in _events():
        await dry.send([event])
    await dry.aclose()
    async with aiohttp.ClientSession() as http:
        for event in _events():
            async with http.post(
                f"{stripe_mock}/v1/billing/meter_events",
                data=v1_form(event),
                headers={"Authorization": f"Bearer {KEY}",
                         "Idempotency-Key": idempotency_key(event.identifier)},
            ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                assert body["object"] == "billing.meter_event"
        for raw in path.read_bytes().splitlines():
            line = orjson.loads(raw)
            async with http.request(
                line["method"], line["url"], data=line["body"],
                headers={**line["headers"], "Authorization": f"Bearer {KEY}"},
            ) as resp:
                assert resp.status == 200, await resp.text()


async def test_reconciliation_reads_are_accepted(stripe_mock: str) -> None:
    settings = StripeSettings(mode="v1", api_key=SecretStr(KEY), api_base=stripe_mock)
    async with aiohttp.ClientSession() as http, http.get(
        f"{stripe_mock}/v1/billing/meters", headers={"Authorization": f"Bearer {KEY}"}
    ) as resp:
        assert resp.status == 200
        event_name = (await resp.json())["data"][0]["event_name"]
    end = int(time.time()) // 60 * 60
    totals = await fetch_stripe_totals(
        settings, period_start_s=end - 86_400, period_end_s=end,
        customers={"c-1": "cus_123"}, meters={"m": event_name},
    )
    assert set(totals) == {("c-1", "m")}
    assert isinstance(totals[("c-1", "m")], Decimal)
