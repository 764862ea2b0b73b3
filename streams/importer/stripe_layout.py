"""Stripe's own usage file layout (the S3 connector's meter event files), read as usage events.

A platform that bills through Stripe's S3 connector writes meter event files to a bucket
(docs.stripe.com/billing/subscriptions/usage-based/recording-usage-in-bulk):

- JSON (an array of objects), JSON Lines (one object a line), or CSV;
- ``identifier`` (optional), ``timestamp`` (Unix **seconds**), ``event_name``, and the
  payload: an object ``payload`` in JSON, ``payload_<key>`` columns in CSV, holding
  ``stripe_customer_id`` and the value (``value``, or the meter's own value key). Other
  top-level keys are ignored, as Stripe ignores them.

``meterstream import --layout stripe`` turns each row into a usage event v1:

- ``id`` = ``identifier`` (a row without one gets the importer's derived id);
- ``meter`` = the configured meter whose ``stripe_event_name`` is ``event_name``
  (``unknown_meter`` otherwise);
- ``customer`` = our customer whose ``stripe_customer_id`` (customers topic) is the
  payload's, or, with ``--stripe-customer-as-id``, the Stripe id itself
  (``unknown_customer`` when no customer has it, ``ambiguous_customer`` when several do);
- ``value`` = the payload's value, exact: a JSON number is read as a decimal, never as a
  binary float;
- ``timestamp`` = seconds x 1000 (a digits-only value is seconds here, not milliseconds);
- the payload's other keys become ``attributes`` (Stripe's dimensions).

Rows are numbered as :mod:`streams.importer.formats` numbers them (JSON: the element's
position, 1-based).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import orjson

from streams.importer.formats import Format, Row, RowError

__all__ = ["StripeLayout", "invert_customers"]

_CUSTOMER_KEY = "stripe_customer_id"
_TOP_FIELDS = ("identifier", "timestamp", "event_name")


def invert_customers(stripe_id_of: Mapping[str, str]) -> dict[str, str | None]:
    """Stripe customer id -> our customer id (None when several customers share it)."""
    out: dict[str, str | None] = {}
    for customer, stripe_id in stripe_id_of.items():
        out[stripe_id] = None if stripe_id in out else customer
    return out


@dataclass
class StripeLayout:
    """Reads files in Stripe's layout; see the module docstring.

    event_meters: Stripe event name -> our meter name.
    customers: Stripe customer id -> our customer (None: ambiguous); ignored when
        ``customer_as_id``.
    value_key: the payload key of the value (Stripe's default ``value``).
    """

    event_meters: Mapping[str, str]
    customers: Mapping[str, str | None] = field(default_factory=dict)
    customer_as_id: bool = False
    value_key: str = "value"

    def read_rows(self, stream: IO[bytes], fmt: Format, mapping: Mapping[str, str]
                  ) -> Iterator[Row]:
        """The rows of one decompressed file (same contract as ``formats.read_rows``)."""
        del mapping  # column mapping does not apply to Stripe's fixed layout
        if fmt == "csv":
            source = _csv_objects(stream)
        elif fmt == "jsonl":
            source = _json_objects(stream)
        else:
            raise ValueError("the Stripe layout is CSV, JSON or JSON Lines, not Parquet")
        for number, obj in source:
            if isinstance(obj, RowError):
                yield number, obj
            else:
                yield number, self.convert(obj)

    def convert(self, obj: dict[str, Any]) -> dict[str, Any] | RowError:
        """One Stripe meter event object -> a usage event v1 dict, or why not."""
        original = _dumps(obj)
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            return RowError("missing_field", "payload must be an object", original)
        event_name = obj.get("event_name")
        if not isinstance(event_name, str) or not event_name:
            return RowError("missing_field", "event_name is required", original)
        meter = self.event_meters.get(event_name)
        if meter is None:
            return RowError("unknown_meter", f"no meter has stripe_event_name "
                            f"{event_name[:60]!r}", original)
        stripe_id = payload.get(_CUSTOMER_KEY)
        if not isinstance(stripe_id, str) or not stripe_id:
            return RowError("missing_field", f"payload.{_CUSTOMER_KEY} is required", original)
        if self.customer_as_id:
            customer: str | None = stripe_id
        elif stripe_id not in self.customers:
            return RowError("unknown_customer", f"no customer record has stripe_customer_id "
                            f"{stripe_id[:60]!r}", original)
        else:
            customer = self.customers[stripe_id]
            if customer is None:
                return RowError("ambiguous_customer", f"several customer records have "
                                f"stripe_customer_id {stripe_id[:60]!r}", original)
        if self.value_key not in payload:
            return RowError("missing_field", f"payload.{self.value_key} is required", original)
        value = _value(payload[self.value_key])
        timestamp_ms = _timestamp_ms(obj.get("timestamp"))
        if timestamp_ms is None:
            return RowError("invalid_timestamp", "timestamp must be Unix seconds (an integer)",
                            original)
        event: dict[str, Any] = {"customer": customer, "meter": meter, "value": value,
                                 "timestamp": timestamp_ms}
        identifier = obj.get("identifier")
        if identifier is not None and identifier != "":
            event["id"] = identifier
        attributes = {k: v if isinstance(v, str) else _dumps(v).decode()
                      for k, v in payload.items() if k not in (_CUSTOMER_KEY, self.value_key)}
        if attributes:
            event["attributes"] = attributes
        return event


def _dumps(obj: object) -> bytes:
    return orjson.dumps(obj, default=str)


def _value(raw: object) -> object:
    """A decimal string for Decimal and digit strings; anything else as is (validation
    names the problem)."""
    if isinstance(raw, Decimal):
        return format(raw, "f") if raw.is_finite() else str(raw)
    if isinstance(raw, str):
        return raw.strip()
    return raw


def _timestamp_ms(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()):
            return None
        raw = int(raw)
    if isinstance(raw, Decimal):
        try:
            ms = raw * 1000
        except InvalidOperation:
            return None
        if not ms.is_finite() or ms != ms.to_integral_value():
            return None
        return int(ms)
    if isinstance(raw, int):
        return raw * 1000
    return None


def _json_objects(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """JSON (one array) or JSON Lines; numbers with a fraction are read as Decimal."""
    data = stream.read()
    stripped = data.lstrip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(data, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            yield 1, RowError("invalid_json", f"not a JSON array: {str(exc)[:200]}", data[:1000])
            return
        for number, item in enumerate(items, start=1):
            if isinstance(item, dict):
                yield number, item
            else:
                yield number, RowError("invalid_shape", "an element must be a JSON object",
                                       _dumps(item))
        return
    for number, line in enumerate(io.BytesIO(data), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            yield number, RowError("invalid_json", f"not UTF-8 JSON: {str(exc)[:200]}",
                                   line.rstrip(b"\r\n"))
            continue
        if isinstance(obj, dict):
            yield number, obj
        else:
            yield number, RowError("invalid_shape", "a line must hold one JSON object",
                                   line.rstrip(b"\r\n"))


def _csv_objects(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """CSV rows as Stripe objects: ``payload_<key>`` columns fill ``payload``."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    names = [h.strip() for h in header]
    next_line = reader.line_num + 1
    for cells in reader:
        number, next_line = next_line, reader.line_num + 1
        if not cells:
            continue
        if len(cells) != len(names):
            yield number, RowError("invalid_shape", f"row has {len(cells)} cells, the header "
                                   f"has {len(names)}", _dumps(cells))
            continue
        obj: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        for name, cell in zip(names, cells, strict=True):
            if cell == "":
                continue
            if name.startswith("payload_"):
                payload[name[len("payload_"):]] = cell
            elif name in _TOP_FIELDS:
                obj[name] = cell
        obj["payload"] = payload
        yield number, obj
