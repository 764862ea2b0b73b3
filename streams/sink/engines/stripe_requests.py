"""The requests a MeterEvent becomes, and the dry-run client that writes them to a file.

v1: ``POST {api}/v1/billing/meter_events``, form-encoded as stripe-python encodes it
(``payload[stripe_customer_id]=...``, square brackets left unescaped).
v2: ``POST {meter_events}/v2/billing/meter_event_stream``, JSON ``{"events": [...]}``
with ISO 8601 timestamps.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

import orjson
import stripe

from streams.errors import PermanentSinkError
from streams.sink.model import MeterEvent

__all__ = [
    "EXACT",
    "DryRunClient",
    "format_value",
    "idempotency_key",
    "v1_form",
    "v1_params",
    "v2_event",
]

EXACT = Context(prec=200, traps=[Inexact, Rounded, InvalidOperation, Overflow])
MAX_SIGNIFICANT_DIGITS = 15
V1_PATH = "/v1/billing/meter_events"
V2_STREAM_PATH = "/v2/billing/meter_event_stream"


def format_value(value: Decimal) -> str:
    """Plain notation without exponent or trailing fraction zeros: ``12.5``, ``1000``.

    Raises PermanentSinkError for what Stripe would refuse: not finite, negative, more
    than 15 significant digits.
    """
    if not value.is_finite() or value < 0:
        raise PermanentSinkError(f"meter event value {value} is not a finite number >= 0",
                                 code="meter_event_invalid_value")
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    integer, _, fraction = text.partition(".")
    if len((integer + fraction).lstrip("0")) > MAX_SIGNIFICANT_DIGITS:
        raise PermanentSinkError(
            f"meter event value {text} has more than {MAX_SIGNIFICANT_DIGITS} significant digits",
            code="meter_event_value_too_many_digits",
        )
    return text


def idempotency_key(identifier: str, generation: int = 0) -> str:
    """Deterministic Idempotency-Key of a v1 meter event (<= 255 chars, Stripe's limit)."""
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:40]
    return f"meterstream-v1-{digest}" + (f"-g{generation}" if generation else "")


def v1_params(event: MeterEvent) -> dict[str, object]:
    """Params of ``client.v1.billing.meter_events.create_async`` (payload values are
    strings)."""
    return {
        "event_name": event.event_name,
        "payload": {"stripe_customer_id": event.stripe_customer_id,
                    "value": format_value(event.value)},
        "identifier": event.identifier,
        "timestamp": event.timestamp_s,
    }


def v1_form(event: MeterEvent) -> list[tuple[str, str]]:
    """The form fields stripe-python sends for :func:`v1_params`, in its order."""
    return [
        ("event_name", event.event_name),
        ("payload[stripe_customer_id]", event.stripe_customer_id),
        ("payload[value]", format_value(event.value)),
        ("identifier", event.identifier),
        ("timestamp", str(event.timestamp_s)),
    ]


def v2_event(event: MeterEvent) -> dict[str, object]:
    """One element of the v2 stream's ``events``."""
    ts = datetime.fromtimestamp(event.timestamp_s, UTC).isoformat().replace("+00:00", "Z")
    return {
        "event_name": event.event_name,
        "payload": {"stripe_customer_id": event.stripe_customer_id,
                    "value": format_value(event.value)},
        "identifier": event.identifier,
        "timestamp": ts,
    }


class DryRunClient:
    """Writes the request each call would make as one JSON line, and sends nothing.

    Line shape, v1 (one event per line)::

        {"method": "POST", "url": "https://api.stripe.com/v1/billing/meter_events",
         "headers": {"Content-Type": "application/x-www-form-urlencoded",
                     "Idempotency-Key": "meterstream-v1-..."},
         "form": [["event_name", "cpu_seconds"], ...], "body": "event_name=cpu_seconds&..."}

    v2 (up to 100 events per line): ``{"method", "url", "headers", "json": {"events": [...]}}``.
    Lines are appended and flushed per call; the file is fsynced on :meth:`aclose`. No
    credentials are written.
    """

    def __init__(
        self,
        path: Path,
        *,
        api: Literal["v1", "v2"] = "v1",
        api_base: str | None = None,
        meter_events_base: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.api = api
        self.max_batch = 1 if api == "v1" else 100
        if api == "v1":
            self._url = (api_base or stripe.DEFAULT_API_BASE).rstrip("/") + V1_PATH
        else:
            base = meter_events_base or stripe.DEFAULT_METER_EVENTS_API_BASE
            self._url = base.rstrip("/") + V2_STREAM_PATH
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self.requests_written = 0

    def _lines(self, events: Sequence[MeterEvent]) -> list[dict[str, object]]:
        if self.api == "v2":
            return [{
                "method": "POST",
                "url": self._url,
                "headers": {"Content-Type": "application/json"},
                "json": {"events": [v2_event(e) for e in events]},
            }]
        lines: list[dict[str, object]] = []
        for e in events:
            form = v1_form(e)
            body = urlencode(form).replace("%5B", "[").replace("%5D", "]")
            lines.append({
                "method": "POST",
                "url": self._url,
                "headers": {"Content-Type": "application/x-www-form-urlencoded",
                            "Idempotency-Key": idempotency_key(e.identifier)},
                "form": [list(pair) for pair in form],
                "body": body,
            })
        return lines

    async def send(self, events: Sequence[MeterEvent]) -> None:
        if len(events) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} events per call, got {len(events)}")
        if not events:
            return
        if self._file.closed:
            raise RuntimeError("DryRunClient is closed")
        data = b"".join(orjson.dumps(line) + b"\n" for line in self._lines(events))
        self._file.write(data)
        self._file.flush()
        self.requests_written += data.count(b"\n")

    async def aclose(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
