"""v1 endpoints: meter events, meter event adjustments, meters and event summaries."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson
from aiohttp import web

from streams.fakes.stripe.config import MeterConfig
from streams.fakes.stripe.ledger import DuplicateIdentifierError, UnknownIdentifierError
from streams.fakes.stripe.state import ErrorReport, FakeState, guarded_write
from streams.fakes.stripe.wire import ApiError, json_response, list_page, parse_value

__all__ = ["V1Api"]

_MAX_IDENTIFIER = 100


def _mask(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "****"


def check_api_key(state: FakeState, request: web.Request) -> None:
    """Stripe's secret key check: ``Authorization: Bearer sk_test_...``."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise ApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    key = auth.removeprefix("Bearer ").strip()
    expected = state.config.api_key
    valid = key == expected if expected else key.startswith(("sk_test_", "rk_test_"))
    if not valid:
        raise ApiError(401, f"Invalid API Key provided: {_mask(key)}", code="api_key_invalid")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A meter event that passed synchronous validation.

    ``deferred``: the error Stripe reports asynchronously for this event (after a 2xx),
    or None when the event is good.
    """

    identifier: str
    event_name: str
    customer: str
    value: Decimal
    timestamp_s: int
    payload: dict[str, str]
    deferred: ApiError | None


def validate_event(
    state: FakeState,
    *,
    event_name: str | None,
    identifier: str | None,
    payload: Mapping[str, str],
    timestamp_s: int | None,
    api: str,
) -> ParsedEvent:
    """Validate one event as Stripe does. Raises ApiError for synchronous failures."""
    cfg = state.config
    if not event_name:
        raise ApiError(400, "Missing required param: event_name.", code="parameter_missing",
                       param="event_name")
    if identifier is None:
        identifier = f"fake_{secrets.token_hex(12)}"
    if not identifier or len(identifier) > _MAX_IDENTIFIER:
        raise ApiError(400, f"identifier must be 1 to {_MAX_IDENTIFIER} characters.",
                       code="parameter_invalid_string_empty", param="identifier")
    now = state.now()
    ts = int(now) if timestamp_s is None else timestamp_s
    meter = next((m for m in cfg.meters if m.event_name == event_name), None)
    deferred: ApiError | None = None
    customer_key = meter.customer_payload_key if meter else "stripe_customer_id"
    value_key = meter.value_payload_key if meter else "value"
    customer = payload.get(customer_key, "")
    raw_value = payload.get(value_key)
    value = Decimal(1) if meter is not None and meter.formula == "count" else Decimal(0)
    if raw_value is not None:
        try:
            value = parse_value(raw_value, allow_negative=cfg.allow_negative_values)
        except ApiError as exc:
            if exc.code == "meter_event_value_too_many_digits" and api == "v1":
                raise  # synchronous on v1 since API version 2026-04-22
            deferred = exc
    if meter is None:
        deferred = ApiError(400, f"No active meter was found matching the event name "
                            f"{event_name}.", code="no_meter", param="event_name")
    elif not customer:
        deferred = ApiError(400, f"The payload has no '{customer_key}' to map the event to "
                            "a customer.", code="meter_event_no_customer_defined",
                            param=f"payload[{customer_key}]")
    elif cfg.customers is not None and customer not in cfg.customers:
        deferred = ApiError(400, f"No such customer: '{customer}'",
                            code="meter_event_customer_not_found",
                            param=f"payload[{customer_key}]")
    elif raw_value is None and meter.formula != "count":
        deferred = ApiError(400, f"The payload has no '{value_key}'.",
                            code="meter_event_value_not_found", param=f"payload[{value_key}]")
    elif ts < now - cfg.max_past_s:
        deferred = ApiError(400, "The timestamp is more than 35 days in the past.",
                            code="timestamp_too_far_in_past", param="timestamp")
    elif ts > now + cfg.max_future_s:
        deferred = ApiError(400, "The timestamp is more than 5 minutes in the future.",
                            code="timestamp_in_future", param="timestamp")
    return ParsedEvent(identifier, event_name, customer, value, ts, dict(payload), deferred)


def accept_event(state: FakeState, event: ParsedEvent, api: str) -> bool:
    """Apply a validated event to the ledger. False when its identifier was already taken
    (v2 drops such duplicates silently; v1 answers 400)."""
    if event.deferred is not None:
        state.error_reports.append(ErrorReport(api, event.deferred.code or "invalid",
                                               event.deferred.message, event.identifier,
                                               event.event_name))
        return True
    try:
        state.ledger.record(
            identifier=event.identifier, event_name=event.event_name, customer=event.customer,
            value=event.value, timestamp_s=event.timestamp_s, received_s=state.now(), api=api,
        )
    except DuplicateIdentifierError:
        return False
    return True


def meter_json(meter: MeterConfig, created_s: int) -> dict[str, object]:
    return {
        "id": meter.id,
        "object": "billing.meter",
        "created": created_s,
        "customer_mapping": {"event_payload_key": meter.customer_payload_key, "type": "by_id"},
        "default_aggregation": {"formula": meter.formula},
        "display_name": meter.display_name or meter.event_name,
        "event_name": meter.event_name,
        "event_time_window": None if meter.event_time_window == "none" else meter.event_time_window,
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": created_s,
        "value_settings": {"event_payload_key": meter.value_payload_key},
    }


def _int_param(params: Mapping[str, str], name: str, *, required: bool) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, f"Missing required param: {name}.", code="parameter_missing",
                           param=name)
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid integer: {raw[:50]}", code="parameter_invalid_integer",
                       param=name) from None


class V1Api:
    """Handlers of Stripe's v1 billing meter endpoints."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.created_s = int(state.now())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/billing/meter_events", self.create_meter_event),
            web.post("/v1/billing/meter_event_adjustments", self.create_adjustment),
            web.get("/v1/billing/meters", self.list_meters),
            web.get("/v1/billing/meters/{id}", self.get_meter),
            web.get("/v1/billing/meters/{id}/event_summaries", self.list_summaries),
        ]

    async def create_meter_event(self, request: web.Request) -> web.Response:
        state = self.state
        check_api_key(state, request)
        decision = state.injector.decide(request.path)
        form = await request.post()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        payload = {
            k[8:-1]: v for k, v in params.items() if k.startswith("payload[") and k[-1] == "]"
        }
        event = validate_event(
            state,
            event_name=params.get("event_name"),
            identifier=params.get("identifier"),
            payload=payload,
            timestamp_s=_int_param(params, "timestamp", required=False),
            api="v1",
        )
        if event.deferred is not None and state.config.strict:
            raise event.deferred

        def process() -> web.Response:
            if not accept_event(state, event, "v1"):
                raise ApiError(400, f"An event already exists with identifier {event.identifier}.",
                               param="identifier", headers={"Stripe-Should-Retry": "false"})
            return json_response({
                "object": "billing.meter_event",
                "created": int(state.now()),
                "event_name": event.event_name,
                "identifier": event.identifier,
                "livemode": False,
                "payload": event.payload,
                "timestamp": event.timestamp_s,
            })

        key = request.headers.get("Idempotency-Key")
        fingerprint = orjson.dumps(sorted(params.items())).decode()
        return await guarded_write(
            state, request, decision,
            pairs=[(event.customer, event.event_name)],
            idempotency=(key, fingerprint) if key else None,
            process=process,
        )

    async def create_adjustment(self, request: web.Request) -> web.Response:
        state = self.state
        check_api_key(state, request)
        form = await request.post()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        event_name = params.get("event_name")
        identifier = params.get("cancel[identifier]")
        kind = params.get("type", "cancel")
        if not event_name:
            raise ApiError(400, "Missing required param: event_name.", code="parameter_missing",
                           param="event_name")
        if kind != "cancel":
            raise ApiError(400, f"Invalid type: must be cancel, not {kind[:30]}.",
                           code="parameter_invalid", param="type")
        if not identifier:
            raise ApiError(400, "Missing required param: cancel[identifier].",
                           code="parameter_missing", param="cancel[identifier]")
        event = next((e for e in state.ledger.events(event_name=event_name)
                      if e.identifier == identifier), None)
        if event is None and state.ledger.has(identifier):
            raise ApiError(400, f"The event {identifier} is already cancelled or belongs to "
                           "another event name.", param="cancel[identifier]")
        try:
            state.ledger.cancel(
                identifier, now_s=state.now(), window_s=state.config.cancel_window_s
            )
        except UnknownIdentifierError:
            raise ApiError(400, f"No meter event with identifier {identifier}.",
                           code="resource_missing", param="cancel[identifier]") from None
        except ValueError as exc:
            raise ApiError(400, str(exc), param="cancel[identifier]") from None
        return json_response({
            "object": "billing.meter_event_adjustment",
            "cancel": {"identifier": identifier},
            "event_name": event_name,
            "livemode": False,
            "status": "pending",
            "type": "cancel",
        })

    def _meter(self, meter_id: str) -> MeterConfig:
        meter = next((m for m in self.state.config.meters if m.id == meter_id), None)
        if meter is None:
            raise ApiError(404, f"No such billing meter: '{meter_id}'", code="resource_missing",
                           param="id")
        return meter

    async def list_meters(self, request: web.Request) -> web.Response:
        check_api_key(self.state, request)
        items = [meter_json(m, self.created_s) for m in self.state.config.meters]
        return json_response(list_page(items, request.query, "/v1/billing/meters"))

    async def get_meter(self, request: web.Request) -> web.Response:
        check_api_key(self.state, request)
        return json_response(meter_json(self._meter(request.match_info["id"]), self.created_s))

    async def list_summaries(self, request: web.Request) -> web.Response:
        check_api_key(self.state, request)
        meter = self._meter(request.match_info["id"])
        query = request.query
        customer = query.get("customer")
        if not customer:
            raise ApiError(400, "Missing required param: customer.", code="parameter_missing",
                           param="customer")
        start = _int_param(query, "start_time", required=True)
        end = _int_param(query, "end_time", required=True)
        assert start is not None and end is not None
        for name, ts in (("start_time", start), ("end_time", end)):
            if ts % 60:
                raise ApiError(400, f"{name} must be aligned with minute boundaries.",
                               code="parameter_invalid", param=name)
        if start >= end:
            raise ApiError(400, "start_time must be before end_time.",
                           code="parameter_invalid", param="start_time")
        grouping = query.get("value_grouping_window")
        if grouping not in (None, "hour", "day"):
            raise ApiError(400, "value_grouping_window must be hour or day.",
                           code="parameter_invalid", param="value_grouping_window")
        buckets = [(start, end)]
        if grouping is not None:
            width = 3600 if grouping == "hour" else 86_400
            buckets = [(max(start, b), min(end, b + width))
                       for b in range(start - start % width, end, width)]
        items = []
        for s, e in reversed(buckets):
            digest = hashlib.sha256(f"{meter.id}|{customer}|{s}|{e}".encode()).hexdigest()[:24]
            items.append({
                "id": f"mtrusum_{digest}",
                "object": "billing.meter_event_summary",
                "aggregated_value": self.state.ledger.aggregate(customer, meter.event_name, s, e),
                "end_time": e,
                "livemode": False,
                "meter": meter.id,
                "start_time": s,
            })
        url = f"/v1/billing/meters/{meter.id}/event_summaries"
        return json_response(list_page(items, query, url))

