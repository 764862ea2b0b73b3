"""Every v2 request the sink builds conforms to the stripe library's own v2 parameter types
(issue 13, item 5).

stripe-mock answers 404 for the v2 meter event endpoints, so this checks the requests
against ``stripe.params.v2.billing`` instead: the TypedDicts generated from Stripe's
OpenAPI description of v2, which name every field, say which are required, and give their
types. A recording proxy (real HTTP) sits between the sink's v2 client and the fake Stripe
and keeps each request as sent; every body is then checked field by field: no unknown
field, every required one present, each of the declared type, and no more events in one
request than the stream's documented limit. The dry-run client's v2 lines are checked the
same way.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import typing_extensions
from aiohttp import ClientSession, web
from stripe.params.v2.billing import _meter_event_session_create_params as session_params
from stripe.params.v2.billing import _meter_event_stream_create_params as stream_params
from stripe.v2.billing import _meter_event_session_service as session_service
from stripe.v2.billing import _meter_event_stream_service as stream_service

from streams.config import MeterSettings
from streams.core.summaries import summary_id
from streams.fakes.stripe import FakeStripe, FakeStripeConfig
from streams.sink.engines.stripe_meter import DryRunClient, StripeV2StreamClient
from streams.sink.engines.stripe_requests import V2_STREAM_PATH, format_value
from streams.sink.plan import Summary, plan_events

KEY = "sk_test_meterstream_v2_conformance_0123"
HOUR_MS = 3_600_000
NOW_MS = 1_795_000_000_000 - 1_795_000_000_000 % HOUR_MS + 1_800_000


def conforms(value: Any, hint: Any, where: str = "body") -> list[str]:
    """Problems of ``value`` against the type ``hint`` (a TypedDict, List, Dict, str...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.NotRequired or origin is typing.Required:
        return conforms(value, args[0], where)
    if origin is typing.Union:
        results = [conforms(value, a, where) for a in args]
        return [] if any(not r for r in results) else results[0]
    if typing_extensions.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        hints = typing.get_type_hints(hint, include_extras=True)
        problems = [f"{where}.{k}: not a field of {hint.__name__}" for k in value
                    if k not in hints]
        problems += [f"{where}.{k}: required by {hint.__name__}, missing"
                     for k in hint.__required_keys__ if k not in value]
        for k, v in value.items():
            if k in hints:
                problems += conforms(v, hints[k], f"{where}.{k}")
        return problems
    if origin in (list, typing.List):  # noqa: UP006 - the library's own spelling
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, v in enumerate(value) for p in conforms(v, args[0], f"{where}[{i}]")]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        return [p for k, v in value.items()
                for p in conforms(k, args[0], f"{where} key") + conforms(v, args[1],
                                                                         f"{where}.{k}")]
    if isinstance(hint, type) and typing.get_origin(hint) is None and hint in (str, int, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {hint.__name__}, got {value!r}"]
    return [f"{where}: cannot check against {hint!r}"]


def stream_limit() -> int:
    """The per-request event limit stated in the library's own field documentation."""
    found = re.search(r"Supports up to (\d+) events per request",
                      inspect.getsource(stream_params))
    assert found, "the stripe library no longer states the stream's per-request limit"
    return int(found.group(1))


class Recorder:
    """A proxy that forwards to the fake Stripe and keeps each request as sent."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.method, request.path, dict(request.headers), body))
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with ClientSession() as session, session.request(
                request.method, self.target + request.path_qs, data=body,
                headers=headers) as resp:
            return web.Response(status=resp.status, body=await resp.read(),
                                content_type=resp.content_type)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    async with FakeStripe(FakeStripeConfig(api_key=KEY)) as fake:
        rec = Recorder(fake.url)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", rec.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}"
        try:
            yield rec
        finally:
            await runner.cleanup()


def sink_events() -> list[Any]:
    """What the sink plans: a plain value, and the issue-13 total split into parts."""
    meter = MeterSettings(name="cpu_seconds", stripe_event_name="cpu_seconds")
    start = NOW_MS - NOW_MS % HOUR_MS - HOUR_MS
    out = []
    for seq, (total, count) in enumerate([(Decimal("12.5"), 3),
                                          (Decimal("120999999999999879.00000000000012"), 241)]):
        s = Summary(summary_id("c-1", "cpu_seconds", start, seq), "c-1", "cpu_seconds", start,
                    start + HOUR_MS, seq, total, total, count)
        out += plan_events(s, meter, "cus_123", NOW_MS)
    return out


def _service_path(module: Any) -> str:
    found = re.search(r'"post",\s*"(/v2/[a-z_/]+)"', inspect.getsource(module))
    assert found
    return found.group(1)


async def test_every_v2_request_matches_the_library_types(recorder: Recorder) -> None:
    events = sink_events()
    assert len(events) == 1 + 122
    client = StripeV2StreamClient(api_key=KEY, api_base=recorder.url,
                                  meter_events_base=recorder.url, timeout_s=2)
    try:
        for i in range(0, len(events), 100):
            await client.send(events[i : i + 100])
    finally:
        await client.aclose()
    session_path = _service_path(session_service)
    stream_path = _service_path(stream_service)
    assert stream_path == V2_STREAM_PATH
    sessions = [r for r in recorder.requests if r[1] == session_path]
    streams = [r for r in recorder.requests if r[1] == stream_path]
    assert len(sessions) == 1 and len(streams) == 2
    assert len(recorder.requests) == 3
    for method, _, headers, body in sessions:
        assert method == "POST"
        params = orjson.loads(body) if body.strip() else {}
        assert conforms(params, session_params.MeterEventSessionCreateParams) == []
        assert headers["Authorization"] == f"Bearer {KEY}"
    limit = stream_limit()
    token = None
    sent: list[str] = []
    for method, _, headers, body in streams:
        assert method == "POST"
        assert headers["Content-Type"].startswith("application/json")
        params = orjson.loads(body)
        assert conforms(params, stream_params.MeterEventStreamCreateParams) == []
        assert 1 <= len(params["events"]) <= limit
        for event in params["events"]:
            # "timestamp": ISO 8601 (the v2 stream's format), in UTC.
            assert datetime.fromisoformat(event["timestamp"]).utcoffset() is not None
            assert event["timestamp"].endswith("Z")
            sent.append(event["payload"]["value"])
        # The stream authenticates with the session token, never with the API key.
        assert headers["Authorization"].startswith("Bearer ")
        assert KEY not in headers["Authorization"]
        token = token or headers["Authorization"]
        assert headers["Authorization"] == token
    assert sent == [format_value(e.value) for e in events]


async def test_dry_run_v2_lines_match_the_library_types(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    client = DryRunClient(path, api="v2", meter_events_base="http://fake:1")
    events = sink_events()
    for i in range(0, len(events), 100):
        await client.send(events[i : i + 100])
    await client.aclose()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert line["url"].endswith(V2_STREAM_PATH)
        body = line["json"]
        assert conforms(body, stream_params.MeterEventStreamCreateParams) == []


def test_the_checker_refuses_what_stripe_would() -> None:
    good = {"event_name": "cpu_seconds", "payload": {"stripe_customer_id": "cus_1",
                                                     "value": "1.5"}}
    hint = stream_params.MeterEventStreamCreateParams
    assert conforms({"events": [good]}, hint) == []
    assert conforms({"events": [{**good, "value": "1"}]}, hint) == [
        "body.events[0].value: not a field of MeterEventStreamCreateParamsEvent"]
    assert conforms({"events": [{"payload": good["payload"]}]}, hint) == [
        "body.events[0].event_name: required by MeterEventStreamCreateParamsEvent, missing"]
    assert conforms({"events": [{**good, "timestamp": 1_795_000_000}]}, hint) == [
        "body.events[0].timestamp: expected str, got 1795000000"]
    assert conforms({"events": [{**good, "payload": {"value": 1.5}}]}, hint) != []
