"""The Metronome engine: meter events as Metronome usage events, through ``metronome-sdk``.

``POST /v1/ingest`` takes a JSON array of 1 to 100 usage events (Metronome's API
reference and the SDK's ``UsageIngestParams``). Each :class:`~streams.sink.model.MeterEvent`
becomes one event (:func:`usage_event`):

- ``transaction_id``: the event's identifier (the summary id, deterministic). Metronome
  ignores an event whose transaction id it accepted in the last 34 days, with a 200, so a
  resend after a timeout, a crash or a replay is success and changes nothing.
- ``customer_id``: the customer's Metronome customer id or ingest alias.
- ``event_type``: the meter's event type (``METRONOME__EVENT_TYPES``, default its name).
- ``timestamp``: RFC 3339 in UTC with a 4-digit year, inside the summary's window and
  Metronome's range (34 days back, 24 hours ahead; see :data:`~streams.sink.plan.METRONOME_LIMITS`).
- ``properties``: ``{value_property: "<exact decimal>"}``. Values are strings, as
  Metronome asks, and are never split: Metronome computes with arbitrary precision.

The SDK stops here: callers see MeterEvents in and :mod:`streams.errors` out
(:func:`translate_error`). The SDK never retries (``max_retries=0``): retries, pacing and
the one call in flight per (customer, meter) belong to the sink. No message carries the
bearer token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import metronome
from metronome.types.v1.usage_ingest_params import Usage

from streams.config import MetronomeSettings
from streams.core.money import EXACT
from streams.errors import PermanentSinkError, RetryableSinkError, SinkError
from streams.sink.model import MeterEvent
from streams.sink.plan import canonical

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "MetronomeClient",
    "fetch_metronome_totals",
    "format_value",
    "rfc3339",
    "translate_error",
    "usage_event",
]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 100
# Customer ids per usage query: Metronome publishes no limit; chunks keep requests small.
_CUSTOMERS_PER_QUERY = 100


def rfc3339(timestamp_s: int) -> str:
    """``2026-12-01T10:00:00Z``: UTC, a 4-digit year, whole seconds."""
    return datetime.fromtimestamp(timestamp_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_value(value: Decimal) -> str:
    """Plain notation, every digit kept (``12.5``, ``120999999999999879.00000000000012``)."""
    if not value.is_finite() or value < 0:
        raise PermanentSinkError(f"usage value {value} is not a finite number >= 0",
                                 code="invalid_value")
    text = format(canonical(value), "f")
    return text


def usage_event(event: MeterEvent, value_property: str = "value") -> Usage:
    """The ``metronome-sdk`` ``Usage`` params of one event (see the module docstring)."""
    return {
        "transaction_id": event.identifier,
        "customer_id": event.stripe_customer_id,
        "event_type": event.event_name,
        "timestamp": rfc3339(event.timestamp_s),
        "properties": {value_property: format_value(event.value)},
    }


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "**********") if secret else text


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    try:
        return max(float(raw), 0.0) if raw is not None else None
    except ValueError:
        return None


def translate_error(exc: metronome.MetronomeError, what: str, secret: str) -> SinkError:
    """The SinkError for an SDK error; ``what`` names the request for the message.

    Connection errors and timeouts, 409, 429 and 5xx retry (``Retry-After`` kept); any
    other status is permanent (401 and 403 hold the sink for the token, see auth.py).
    """
    if isinstance(exc, metronome.APIConnectionError):
        return RetryableSinkError(f"{what}: connection error or timeout ({type(exc).__name__})")
    if isinstance(exc, metronome.APIStatusError):
        status = exc.status_code
        detail = _scrub(_detail(exc), secret)[:300]
        message = f"{what}: HTTP {status}: {detail}"
        if status in (409, 429) or status >= 500:
            return RetryableSinkError(message, retry_after_s=_retry_after(exc.response.headers))
        return PermanentSinkError(message, status=status, code=_code(exc))
    return RetryableSinkError(f"{what}: {type(exc).__name__}")


def _detail(exc: metronome.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str):
            return message
    return exc.message


def _code(exc: metronome.APIStatusError) -> str | None:
    body = exc.body
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


class MetronomeClient:
    """Up to ``max_batch`` (Metronome's limit: 100, the default) usage events per
    ``POST /v1/ingest``, through ``metronome.AsyncMetronome``."""

    max_batch: int

    def __init__(
        self,
        *,
        api_token: str,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        max_batch: int = MAX_EVENTS_PER_REQUEST,
        value_property: str = "value",
    ) -> None:
        if not 1 <= max_batch <= MAX_EVENTS_PER_REQUEST:
            raise ValueError("max_batch must be within 1..100 (Metronome's limit per request)")
        self.max_batch = max_batch
        self._secret = api_token
        self._value_property = value_property
        self._client = metronome.AsyncMetronome(
            bearer_token=api_token, base_url=api_base, max_retries=0, timeout=timeout_s)
        self.requests_sent = 0

    async def send(self, events: Sequence[MeterEvent]) -> None:
        if len(events) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} events per call, got {len(events)}")
        if not events:
            return
        usage = [usage_event(e, self._value_property) for e in events]
        what = (f"metronome ingest ({len(events)} events, first {events[0].identifier} "
                f"{events[0].customer}/{events[0].meter})")
        try:
            await self._client.v1.usage.ingest(usage=usage)
        except metronome.MetronomeError as exc:
            raise translate_error(exc, what, self._secret) from exc
        finally:
            self.requests_sent += 1

    async def aclose(self) -> None:
        await self._client.close()


def make_metronome_client(settings: MetronomeSettings) -> MetronomeClient:
    """The client for ``settings``; ConfigError-worthy checks are the caller's."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    return MetronomeClient(api_token=token, api_base=settings.api_base,
                           timeout_s=settings.timeout_s, max_batch=settings.batch_size,
                           value_property=settings.value_property)


async def _all_pages(first: Any) -> list[Any]:
    return [item async for item in first]


def _iso(seconds: int) -> str:
    return rfc3339(seconds)


async def fetch_metronome_totals(
    settings: MetronomeSettings,
    *,
    period_start_s: int,
    period_end_s: int,
    customers: Mapping[str, str],
    meters: Mapping[str, str],
) -> dict[tuple[str, str], Decimal]:
    """Metronome's usage per (our customer, our meter) over [period_start_s, period_end_s),
    both UTC midnights (Metronome's rule for ``POST /v1/usage``).

    ``customers``: our customer id -> Metronome customer id or ingest alias (an alias is
    resolved with ``GET /v1/customers?ingest_alias=``). ``meters``: our meter -> event
    type; its billable metric is ``billable_metric_ids[meter]`` or the one named like
    the event type. Values are parsed from the response text as exact decimals.
    """
    if period_start_s % 86_400 or period_end_s % 86_400 or period_start_s >= period_end_s:
        raise ValueError("period bounds must be UTC midnights in Unix seconds, start < end")
    secret = settings.api_token.get_secret_value() if settings.api_token else ""
    client = metronome.AsyncMetronome(bearer_token=secret, base_url=settings.api_base,
                                      max_retries=2, timeout=settings.timeout_s)
    try:
        try:
            metrics = await _all_pages(client.v1.billable_metrics.list())
        except metronome.MetronomeError as exc:
            raise translate_error(exc, "metronome billable metrics", secret) from exc
        by_name = {m.name: m.id for m in metrics if m.archived_at is None}
        metric_of: dict[str, str] = {}
        for meter, event_type in meters.items():
            metric_id = settings.billable_metric_ids.get(meter) or by_name.get(event_type)
            if metric_id is None:
                raise PermanentSinkError(
                    f"no Metronome billable metric is named {event_type!r} (meter {meter}); "
                    "set METERSTREAM_METRONOME__BILLABLE_METRIC_IDS", status=404)
            metric_of[meter] = metric_id
        ours_of: dict[str, list[str]] = {}
        for customer, ref in customers.items():
            try:
                found = await _all_pages(client.v1.customers.list(ingest_alias=ref))
            except metronome.MetronomeError as exc:
                raise translate_error(exc, "metronome customers", secret) from exc
            metronome_id = found[0].id if found else ref
            ours_of.setdefault(metronome_id, []).append(customer)
        meter_of = {metric_id: meter for meter, metric_id in metric_of.items()}
        totals: dict[tuple[str, str], Decimal] = {
            (c, m): Decimal(0) for c in customers for m in meters}
        ids = sorted(ours_of)
        for first in range(0, len(ids), _CUSTOMERS_PER_QUERY):
            chunk = ids[first:first + _CUSTOMERS_PER_QUERY]
            next_page: str | None = None
            while True:
                rows, next_page = await _usage_page(client, secret, chunk, metric_of,
                                                    period_start_s, period_end_s, next_page)
                for row in rows:
                    meter_name = meter_of.get(row["billable_metric_id"])
                    value = row.get("value")
                    if meter_name is None or value is None:
                        continue
                    for customer in ours_of.get(row["customer_id"], []):
                        key = (customer, meter_name)
                        totals[key] = EXACT.add(totals[key], Decimal(value))
                if not next_page:
                    break
        return totals
    finally:
        await client.close()


async def _usage_page(
    client: metronome.AsyncMetronome, secret: str, customer_ids: list[str],
    metric_of: Mapping[str, str], start_s: int, end_s: int, next_page: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    extra: dict[str, Any] = {"next_page": next_page} if next_page else {}
    try:
        raw = await client.v1.usage.with_raw_response.list(
            starting_on=_iso(start_s), ending_before=_iso(end_s), window_size="NONE",
            customer_ids=customer_ids,
            billable_metrics=[{"id": metric_id} for metric_id in metric_of.values()],
            **extra,
        )
    except metronome.MetronomeError as exc:
        raise translate_error(exc, "metronome usage query", secret) from exc
    # Parse the text ourselves: value is a JSON number, and a float would round it.
    page = json.loads(await raw.text(), parse_float=Decimal)
    return list(page.get("data") or []), page.get("next_page")
