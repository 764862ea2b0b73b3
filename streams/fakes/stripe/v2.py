"""v2 endpoints: meter event sessions and the high-throughput meter event stream.

As on Stripe, the stream checks the request's shape synchronously and the events'
content asynchronously: a bad event still gets a 200, and lands in the fake's
``error_reports``; an event whose identifier was already accepted is dropped silently.
"""

from __future__ import annotations

import secrets

import orjson
from aiohttp import web

from streams.fakes.stripe.state import FakeState, guarded_write
from streams.fakes.stripe.v1 import ParsedEvent, accept_event, check_api_key, validate_event
from streams.fakes.stripe.wire import ApiError, iso8601, json_response, parse_iso8601

__all__ = ["V2Api"]

MAX_EVENTS_PER_REQUEST = 100


def _session_expired() -> ApiError:
    return ApiError(
        401,
        "The meter event session has expired. Create a new session.",
        type="temporary_session_expired",
        code="billing_meter_event_session_expired",
    )


class V2Api:
    """Handlers of Stripe's v2 meter event session and stream endpoints."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/billing/meter_event_session", self.create_session),
            web.post("/v2/billing/meter_event_stream", self.stream),
        ]

    async def create_session(self, request: web.Request) -> web.Response:
        state = self.state
        check_api_key(state, request)
        now = state.now()
        token = f"mes_test_{secrets.token_hex(24)}"
        expires = now + state.config.session_ttl_s
        state.sessions[token] = expires
        return json_response({
            "id": f"mes_{secrets.token_hex(12)}",
            "object": "v2.billing.meter_event_session",
            "authentication_token": token,
            "created": iso8601(now),
            "expires_at": iso8601(expires),
            "livemode": False,
        })

    def _check_session(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        expires = self.state.sessions.get(token)
        if expires is None:
            raise ApiError(
                401,
                "Invalid or missing meter event session token: create a session with "
                "POST /v2/billing/meter_event_session and send its authentication_token.",
                type="invalid_request_error",
                code="api_key_invalid",
            )
        if self.state.now() >= expires:
            raise _session_expired()

    def _parse(self, body: bytes) -> list[ParsedEvent]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "The request body is not valid JSON.") from None
        events = doc.get("events") if isinstance(doc, dict) else None
        if not isinstance(events, list) or not events:
            raise ApiError(400, "Missing required param: events.", code="parameter_missing",
                           param="events")
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise ApiError(400, f"events supports at most {MAX_EVENTS_PER_REQUEST} events per "
                           "request.", code="parameter_invalid", param="events")
        parsed = []
        for i, ev in enumerate(events):
            param = f"events[{i}]"
            if not isinstance(ev, dict):
                raise ApiError(400, f"{param} must be an object.", param=param)
            payload = ev.get("payload")
            if not isinstance(payload, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in payload.items()
            ):
                raise ApiError(400, f"{param}.payload must be an object of strings.",
                               param=f"{param}.payload")
            name, ident, ts_raw = ev.get("event_name"), ev.get("identifier"), ev.get("timestamp")
            if not isinstance(name, str) or (ident is not None and not isinstance(ident, str)):
                raise ApiError(400, f"{param}: event_name and identifier must be strings.",
                               param=f"{param}.event_name")
            timestamp_s: int | None = None
            if ts_raw is not None:
                try:
                    timestamp_s = int(parse_iso8601(str(ts_raw)))
                except ValueError:
                    raise ApiError(400, f"{param}.timestamp must be an ISO 8601 date-time.",
                                   param=f"{param}.timestamp") from None
            parsed.append(validate_event(self.state, event_name=name, identifier=ident,
                                         payload=payload, timestamp_s=timestamp_s, api="v2"))
        return parsed

    async def stream(self, request: web.Request) -> web.Response:
        state = self.state
        self._check_session(request)
        decision = state.injector.decide(request.path)
        events = self._parse(await request.read())

        def process() -> web.Response:
            for event in events:
                accept_event(state, event, "v2")
            return json_response({})

        return await guarded_write(state, request, decision, pairs=(), idempotency=None,
                                   process=process)
