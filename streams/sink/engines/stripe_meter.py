"""MeterEventClient implementations on the stripe library (v1, v2 stream), a dry-run
file writer, and the reconciliation read of Stripe's meter totals.

The stripe library stops here: callers see :class:`streams.sink.model.MeterEvent` in and
:mod:`streams.errors` out. Every ``stripe.StripeError`` is translated at this boundary
(``raise ... from exc``):

- 400 "An event already exists with identifier ..." -> success (the event is in Stripe)
- 429, 409, 5xx, timeouts, connection errors -> RetryableSinkError (``Retry-After`` kept)
- any other 4xx -> PermanentSinkError(status, code)

The clients never retry (``max_network_retries=0``): retries, pacing and the one call in
flight per (customer, meter) belong to the sink. No message carries the API key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import stripe

from streams.config import StripeSettings
from streams.errors import PermanentSinkError, RetryableSinkError, SinkError
from streams.sink.engines.stripe_requests import (
    EXACT,
    DryRunClient,
    idempotency_key,
    v1_params,
    v2_event,
)
from streams.sink.model import MeterEvent, MeterEventClient

__all__ = [
    "DryRunClient",
    "StripeV1Client",
    "StripeV2StreamClient",
    "fetch_stripe_totals",
    "make_meter_event_client",
]

log = logging.getLogger(__name__)

DUPLICATE_MESSAGE_PREFIX = "An event already exists with identifier"
SESSION_EXPIRED_CODE = "billing_meter_event_session_expired"
# A key for a fake Stripe or stripe-mock, used when settings name an api_base but no key.
FAKE_TEST_KEY = "sk_test_meterstream_fake"
_MAX_TRACKED_IDENTIFIERS = 100_000


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "sk_***") if secret else text


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(raw), 0.0) if raw is not None else None
    except ValueError:
        return None


def is_duplicate_identifier(exc: stripe.StripeError) -> bool:
    """Stripe's answer to a second v1 event with a known identifier (a 400)."""
    message = exc.user_message or ""
    return exc.http_status == 400 and message.startswith(DUPLICATE_MESSAGE_PREFIX)


def translate_error(exc: stripe.StripeError, what: str, secret: str) -> SinkError:
    """The SinkError for a stripe error; ``what`` names the request for the message."""
    status = exc.http_status
    code = exc.code
    detail = _scrub(exc.user_message or type(exc).__name__, secret)[:300]
    if isinstance(exc, stripe.APIConnectionError) or status is None:
        return RetryableSinkError(f"{what}: connection error or timeout ({type(exc).__name__})")
    message = f"{what}: HTTP {status}{f' {code}' if code else ''}: {detail}"
    if status in (409, 429) or status >= 500:
        return RetryableSinkError(message, retry_after_s=_retry_after(exc.headers))
    return PermanentSinkError(message, status=status, code=code)


def _check_batch(events: Sequence[MeterEvent], max_batch: int) -> None:
    if len(events) > max_batch:
        raise ValueError(f"at most {max_batch} events per call, got {len(events)}")


class StripeV1Client:
    """One ``POST /v1/billing/meter_events`` per event, through the stripe library's
    asyncio transport (``stripe.AIOHTTPClient``).

    Idempotency-Key: derived from the identifier, so a resend after a timeout replays
    the first answer. Stripe saves 500 answers under the key too, so after a 5xx the
    key moves to a new generation (the identifier still prevents a double count).
    """

    max_batch = 1

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._secret = api_key
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=self._http,
        )
        self._generations: OrderedDict[str, int] = OrderedDict()

    async def send(self, events: Sequence[MeterEvent]) -> None:
        _check_batch(events, self.max_batch)
        for event in events:
            await self._send_one(event)

    async def _send_one(self, event: MeterEvent) -> None:
        generation = self._generations.get(event.identifier, 0)
        what = f"stripe v1 meter event {event.identifier} ({event.customer}/{event.meter})"
        try:
            await self._client.v1.billing.meter_events.create_async(
                params=v1_params(event),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key(event.identifier, generation)},
            )
        except stripe.StripeError as exc:
            if is_duplicate_identifier(exc):
                log.debug("meter event %s already in Stripe", event.identifier)
                self._generations.pop(event.identifier, None)
                return
            err = translate_error(exc, what, self._secret)
            if exc.http_status is not None and exc.http_status >= 500:
                self._generations[event.identifier] = generation + 1
                self._generations.move_to_end(event.identifier)
                while len(self._generations) > _MAX_TRACKED_IDENTIFIERS:
                    self._generations.popitem(last=False)
            raise err from exc
        self._generations.pop(event.identifier, None)

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


class StripeV2StreamClient:
    """Up to ``max_batch`` (Stripe's limit: 100, the default) events per
    ``POST /v2/billing/meter_event_stream``.

    The stream authenticates with a meter event session token (valid 15 minutes),
    created with the API key. The token is renewed ``refresh_margin_s`` before it
    expires, and once more when Stripe answers 401 billing_meter_event_session_expired
    (then the request is sent again, once). Duplicate identifiers are dropped by Stripe
    without an error; the stream validates events asynchronously, so a 200 means
    "received", not "billed" (reconcile with :func:`fetch_stripe_totals`).
    """

    max_batch: int

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        meter_events_base: str | None = None,
        timeout_s: float = 10.0,
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_batch: int = 100,
    ) -> None:
        if not 1 <= max_batch <= 100:
            raise ValueError("max_batch must be within 1..100 (Stripe's limit per request)")
        self.max_batch = max_batch
        self._secret = api_key
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        bases: dict[str, str] = {}
        if api_base:
            bases["api"] = api_base
        if meter_events_base:
            bases["meter_events"] = meter_events_base
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=bases or None,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=self._http,
        )
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._token: str | None = None
        self._expires_at_s = 0.0
        self._lock = asyncio.Lock()
        self.sessions_created = 0

    async def _session_token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if (
                renew
                or self._token is None
                or self._clock() >= self._expires_at_s - self._refresh_margin_s
            ):
                try:
                    session = await self._client.v2.billing.meter_event_session.create_async()
                except stripe.StripeError as exc:
                    raise translate_error(exc, "stripe meter event session", self._secret) from exc
                self._token = session.authentication_token
                expires = datetime.fromisoformat(session.expires_at.replace("Z", "+00:00"))
                self._expires_at_s = expires.replace(tzinfo=expires.tzinfo or UTC).timestamp()
                self.sessions_created += 1
                log.info("stripe meter event session created, expires %s", session.expires_at)
            return self._token

    async def send(self, events: Sequence[MeterEvent]) -> None:
        _check_batch(events, self.max_batch)
        if not events:
            return
        params = {"events": [v2_event(e) for e in events]}
        what = f"stripe v2 meter event stream ({len(events)} events, first {events[0].identifier})"
        token = await self._session_token()
        for attempt in (0, 1):
            try:
                await self._client.v2.billing.meter_event_stream.create_async(
                    params=params,  # type: ignore[arg-type]
                    options={"api_key": token},
                )
                return
            except stripe.StripeError as exc:
                expired = exc.http_status == 401 and exc.code == SESSION_EXPIRED_CODE
                if expired and attempt == 0:
                    token = await self._session_token(renew=True)
                    continue
                raise translate_error(exc, what, self._secret) from exc

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _api_key(settings: StripeSettings) -> str:
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    return FAKE_TEST_KEY


def make_meter_event_client(settings: StripeSettings) -> MeterEventClient:
    """The client ``settings.mode`` asks for. With ``api_base`` set and no
    ``meter_events_base``, the v2 stream goes to ``api_base`` too (a fake Stripe serves
    both)."""
    if settings.mode == "dry-run":
        return DryRunClient(settings.dry_run_path, api="v1", api_base=settings.api_base)
    if settings.mode == "v1":
        return StripeV1Client(
            api_key=_api_key(settings), api_base=settings.api_base, timeout_s=settings.timeout_s
        )
    return StripeV2StreamClient(
        api_key=_api_key(settings),
        api_base=settings.api_base,
        meter_events_base=settings.meter_events_base or settings.api_base,
        timeout_s=settings.timeout_s,
        max_batch=settings.batch_size,
    )


async def _get_json(client: stripe.StripeClient, url: str, secret: str, **params: Any) -> Any:
    try:
        resp = await client.raw_request_async("get", url, **params)
    except stripe.StripeError as exc:
        raise translate_error(exc, f"stripe GET {url}", secret) from exc
    # Parse the text ourselves: aggregated_value is a JSON number, and a float would
    # round it.
    return json.loads(resp.body, parse_float=Decimal)


async def _list_all(client: stripe.StripeClient, url: str, secret: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    starting_after: str | None = None
    while True:
        page_params = dict(params, limit=100)
        if starting_after is not None:
            page_params["starting_after"] = starting_after
        page = await _get_json(client, url, secret, **page_params)
        items.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            return items
        starting_after = page["data"][-1]["id"]


async def fetch_stripe_totals(
    settings: StripeSettings,
    *,
    period_start_s: int,
    period_end_s: int,
    customers: Mapping[str, str],
    meters: Mapping[str, str],
) -> dict[tuple[str, str], Decimal]:
    """Stripe's aggregated value per (our customer, our meter) over
    [period_start_s, period_end_s), both on minute boundaries (Stripe's rule).

    ``customers``: our customer id -> Stripe customer id. ``meters``: our meter name ->
    Stripe event name. Stripe meters are found by event name (an active one first).
    Stripe aggregates asynchronously, so recent events may not be counted yet.
    """
    if period_start_s % 60 or period_end_s % 60 or period_start_s >= period_end_s:
        raise ValueError("period bounds must be minute-aligned Unix seconds, start < end")
    secret = _api_key(settings)
    http = stripe.AIOHTTPClient(timeout=settings.timeout_s)
    client = stripe.StripeClient(
        secret,
        base_addresses={"api": settings.api_base} if settings.api_base else None,
        max_network_retries=2,
        http_client=http,
    )
    try:
        stripe_meters = await _list_all(client, "/v1/billing/meters", secret)
        meter_ids: dict[str, str] = {}
        for m in sorted(stripe_meters, key=lambda m: m.get("status") != "active"):
            meter_ids.setdefault(m["event_name"], m["id"])
        totals: dict[tuple[str, str], Decimal] = {}
        for meter, event_name in meters.items():
            meter_id = meter_ids.get(event_name)
            if meter_id is None:
                raise PermanentSinkError(
                    f"no Stripe meter has the event name {event_name!r} (meter {meter})",
                    status=404,
                    code="resource_missing",
                )
            for customer, stripe_customer in customers.items():
                summaries = await _list_all(
                    client,
                    f"/v1/billing/meters/{meter_id}/event_summaries",
                    secret,
                    customer=stripe_customer,
                    start_time=period_start_s,
                    end_time=period_end_s,
                )
                total = Decimal(0)
                for s in summaries:
                    total = EXACT.add(total, Decimal(s["aggregated_value"]))
                totals[(customer, meter)] = total
        return totals
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]

