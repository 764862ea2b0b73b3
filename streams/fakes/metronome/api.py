"""The fake's Metronome endpoints: ingest (validation, dedup, faults), usage, billable
metrics, customers.

Validation of ``POST /v1/ingest`` follows the published API and ``metronome-sdk``'s
``UsageIngestParams``: the body is a JSON array of 1 to 100 objects; each has the string
fields ``transaction_id``, ``customer_id``, ``event_type`` and ``timestamp`` (RFC 3339
with a 4-digit year), optional ``properties`` (an object), and nothing else. A timestamp
more than 24 hours ahead or more than 34 days back is refused. Any bad event refuses the
whole request (400) and nothing of it is recorded. A transaction id already accepted in
the last 34 days is ignored: the request still gets 200.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from streams.errors import FakeServerError
from streams.fakes.faults import FaultDecision, FaultInjector, TrafficStats
from streams.fakes.metronome.config import FakeMetronomeConfig
from streams.fakes.metronome.ledger import MetronomeLedger
from streams.fakes.server import DROPPED, json_response

__all__ = ["MAX_EVENTS", "FakeMetronomeState", "MetronomeApi", "MetronomeApiError"]

MAX_EVENTS = 100
REQUIRED = ("transaction_id", "customer_id", "event_type", "timestamp")
OPTIONAL = ("properties",)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_PAGE = 100


class MetronomeApiError(FakeServerError):
    """An error answer: ``{"message": ...}`` with a status."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_response({"message": self.message}, status=self.status,
                             headers=self.headers)


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 date-time with a 4-digit year; ValueError otherwise."""
    if not _RFC3339.match(text):
        raise ValueError(text)
    return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeMetronomeState:
    config: FakeMetronomeConfig
    ledger: MetronomeLedger
    injector: FaultInjector
    stats: TrafficStats = field(default_factory=TrafficStats)
    rejected: list[str] = field(default_factory=list)
    """The message of every refused ingest request (400), newest last."""

    def now(self) -> float:
        return self.config.clock()

    def resolve(self, customer_id: str) -> str | None:
        """The Metronome customer id an event's ``customer_id`` names, or None."""
        customers = self.config.customers
        if customers is None:
            return customer_id
        for c in customers:
            if customer_id == c.id or customer_id in c.ingest_aliases:
                return c.id
        return None


@dataclass(frozen=True, slots=True)
class _Event:
    transaction_id: str
    customer_id: str
    event_type: str
    timestamp_s: float
    properties: dict[str, object]


def validate_events(state: FakeMetronomeState, body: bytes) -> list[_Event]:
    """The request's events, or MetronomeApiError(400) naming the first problem."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MetronomeApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(doc, list) or not 1 <= len(doc) <= MAX_EVENTS:
        raise MetronomeApiError(400, f"The body must be a JSON array of 1 to {MAX_EVENTS} "
                                "usage events.")
    now = state.now()
    events = []
    for i, ev in enumerate(doc):
        where = f"usage[{i}]"
        if not isinstance(ev, dict):
            raise MetronomeApiError(400, f"{where} must be an object.")
        unknown = sorted(set(ev) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise MetronomeApiError(400, f"{where} has unknown fields: {', '.join(unknown)}.")
        for name in REQUIRED:
            value = ev.get(name)
            if not isinstance(value, str) or not value:
                raise MetronomeApiError(400, f"{where}.{name} is required: a non-empty string.")
        properties = ev.get("properties", {})
        if not isinstance(properties, dict):
            raise MetronomeApiError(400, f"{where}.properties must be an object.")
        try:
            ts = parse_rfc3339(ev["timestamp"])
        except ValueError:
            raise MetronomeApiError(400, f"{where}.timestamp must be an RFC 3339 date-time "
                                    "with a 4-digit year.") from None
        if ts > now + state.config.max_future_s:
            raise MetronomeApiError(400, f"{where}.timestamp is more than 24 hours in the "
                                    "future.")
        if ts < now - state.config.max_past_s:
            raise MetronomeApiError(400, f"{where}.timestamp is more than 34 days in the past.")
        events.append(_Event(ev["transaction_id"], ev["customer_id"], ev["event_type"], ts,
                             properties))
    return events


class MetronomeApi:
    """Handlers of the Metronome endpoints the sink and reconcile use."""

    def __init__(self, state: FakeMetronomeState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/ingest", self.ingest),
            web.post("/v1/usage", self.usage),
            web.get("/v1/billable-metrics", self.billable_metrics),
            web.get("/v1/customers", self.customers),
        ]

    def _check_token(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        expected = self.state.config.api_token
        if not token or (expected is not None and token != expected):
            raise MetronomeApiError(401, "Unauthorized: missing or invalid bearer token.")

    async def ingest(self, request: web.Request) -> web.Response:
        state = self.state
        self._check_token(request)
        decision = state.injector.decide(request.path)
        if decision.kind == "429":
            headers = {}
            if state.injector.faults.retry_after_s is not None:
                headers["Retry-After"] = f"{state.injector.faults.retry_after_s:g}"
            raise MetronomeApiError(429, "Too many requests.", headers)
        try:
            events = validate_events(state, await request.read())
        except MetronomeApiError as exc:
            state.rejected.append(exc.message)
            raise
        # Metronome has no per-customer concurrency rule; the fake only measures ours
        # (stats.max_pair_concurrency: calls in flight for one customer and event type).
        pairs = {(e.customer_id, e.event_type) for e in events}
        for pair in pairs:
            state.stats.pair_in_flight[pair] += 1
            state.stats.max_pair_concurrency = max(state.stats.max_pair_concurrency,
                                                   state.stats.pair_in_flight[pair])
        try:
            return await self._execute(request, decision, events)
        finally:
            for pair in pairs:
                state.stats.pair_in_flight[pair] -= 1
                if not state.stats.pair_in_flight[pair]:
                    del state.stats.pair_in_flight[pair]

    async def _execute(self, request: web.Request, decision: FaultDecision,
                       events: list[_Event]) -> web.Response:
        state = self.state
        await _hold(request, state.injector.faults.latency_s)
        if decision.kind == "500":
            raise MetronomeApiError(500, "Internal server error.")

        def apply() -> None:
            now = state.now()
            for e in events:
                state.ledger.record(
                    transaction_id=e.transaction_id, customer_id=e.customer_id,
                    customer=state.resolve(e.customer_id), event_type=e.event_type,
                    timestamp_s=e.timestamp_s, properties=e.properties, now_s=now)

        if decision.kind == "timeout":
            if decision.applied:
                apply()
            await _hold(request, state.injector.faults.timeout_hold_s)
            raise MetronomeApiError(500, "Internal server error (after a timeout fault).")
        if decision.kind == "drop":
            if decision.applied:
                apply()
            request[DROPPED] = True
            if request.transport is not None:
                request.transport.abort()
            return json_response({})
        apply()
        return web.Response(status=200)

    async def usage(self, request: web.Request) -> web.Response:
        state = self.state
        self._check_token(request)
        try:
            body: Any = orjson.loads(await request.read() or b"{}")
            start = parse_rfc3339(body["starting_on"])
            end = parse_rfc3339(body["ending_before"])
            window = str(body["window_size"]).upper()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise MetronomeApiError(400, "starting_on, ending_before (RFC 3339) and "
                                    "window_size are required.") from None
        if start % 86_400 or end % 86_400 or end - start < 86_400:
            raise MetronomeApiError(400, "starting_on and ending_before must be UTC midnights, "
                                    "at least one day apart.")
        if window not in ("NONE", "DAY"):
            raise MetronomeApiError(400, "window_size must be NONE or DAY in this fake.")
        customers = body.get("customer_ids") or state.ledger.customers()
        metric_ids = [m["id"] for m in body.get("billable_metrics") or []] or list(
            state.ledger.metrics)
        unknown = [m for m in metric_ids if m not in state.ledger.metrics]
        if unknown:
            raise MetronomeApiError(400, f"unknown billable metrics: {', '.join(unknown)}")
        step = end - start if window == "NONE" else 86_400
        rows: list[dict[str, object]] = []
        for customer in customers:
            for metric_id in metric_ids:
                t = start
                while t < end:
                    value = state.ledger.usage(customer, metric_id, t, t + step)
                    rows.append({"customer_id": customer, "billable_metric_id": metric_id,
                                 "billable_metric_name": state.ledger.metrics[metric_id].name,
                                 "start_timestamp": _iso(t), "end_timestamp": _iso(t + step),
                                 "value": value})
                    t += step
        return _page(rows, request.query.get("next_page"))

    async def billable_metrics(self, request: web.Request) -> web.Response:
        self._check_token(request)
        rows: list[dict[str, object]] = [
            {"id": m.id, "name": m.name, "aggregation_type": m.aggregation_type,
             "aggregation_key": None if m.aggregation_type == "COUNT" else m.aggregation_key,
             "event_type_filter": {"in_values": [m.event_type]}, "property_filters": [],
             "group_keys": [], "custom_fields": {}}
            for m in self.state.config.billable_metrics]
        return _page(rows, request.query.get("next_page"))

    async def customers(self, request: web.Request) -> web.Response:
        self._check_token(request)
        alias = request.query.get("ingest_alias")
        known = self.state.config.customers or ()
        rows: list[dict[str, object]] = [
            {"id": c.id, "name": c.name or c.id, "external_id": (c.ingest_aliases or (c.id,))[0],
             "ingest_aliases": list(c.ingest_aliases), "custom_fields": {},
             "customer_config": {}, "created_at": "2026-01-01T00:00:00Z",
             "updated_at": "2026-01-01T00:00:00Z"}
            for c in known if alias is None or alias in c.ingest_aliases]
        return _page(rows, request.query.get("next_page"))


def _page(rows: list[dict[str, object]], cursor: str | None) -> web.Response:
    """One page of ``rows``; Decimal values go out as exact JSON numbers."""
    first = int(cursor) if cursor and cursor.isdigit() else 0
    page = rows[first:first + _PAGE]
    next_page = str(first + _PAGE) if first + _PAGE < len(rows) else None
    numbers: dict[str, str] = {}
    for i, row in enumerate(page):
        value = row.get("value")
        if isinstance(value, Decimal):
            token = f"__fake_decimal_{i}__"
            numbers[f'"{token}"'] = format(value, "f")
            row["value"] = token
    text = orjson.dumps({"data": page, "next_page": next_page}).decode()
    for token, number in numbers.items():
        text = text.replace(token, number)
    return web.Response(text=text, content_type="application/json")


async def _hold(request: web.Request, seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
