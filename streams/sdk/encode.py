"""Turn the arguments of ``UsageProducer.report`` into a validated wire record.

Shared by the asyncio producer and the threaded reporter (which validates in the caller's
thread, so a bad event raises where it was reported). Pure and thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from time import time_ns
from typing import NamedTuple

import orjson

from streams.core.events import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    MAX_VALUE_INT,
    Rejection,
    validate_event,
)
from streams.errors import EventValidationError
from streams.sdk.uuid7 import uuid7_str

__all__ = [
    "EventValue",
    "Prepared",
    "Timestamp",
    "encode_event",
    "prepare_event",
    "timestamp_ms",
    "wire_value",
]

EventValue = Decimal | int | str
Timestamp = datetime | int | None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Prepared(NamedTuple):
    """A validated event: its id, customer, record key and JSON bytes."""

    id: str
    customer: str
    key: bytes
    payload: bytes


def wire_value(value: object) -> object:
    """``value`` as JSON wants it: an int or a plain-notation decimal string; never a float."""
    value_type = type(value)
    if value_type is int or value_type is str:
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EventValidationError("invalid_value", f"value must be finite, got {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise EventValidationError(
            "invalid_value",
            "value is a float; pass a Decimal, an int or a decimal string such as \"12.5\" "
            "(a float cannot hold most decimal fractions exactly)",
        )
    if isinstance(value, bool):
        raise EventValidationError("invalid_value", "value is a bool; pass a number")
    if isinstance(value, int):  # an int subclass such as IntEnum
        return int(value)
    if isinstance(value, str):
        return str(value)
    raise EventValidationError(
        "invalid_value", f"value must be a Decimal, int or str, got {value_type.__name__}"
    )


def timestamp_ms(timestamp: object) -> int:
    """Epoch milliseconds of a timezone-aware datetime, an int, or None (now)."""
    if timestamp is None:
        return time_ns() // 1_000_000
    if type(timestamp) is int:
        return timestamp
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise EventValidationError(
                "invalid_timestamp",
                "timestamp is a naive datetime; pass a timezone-aware one, e.g. "
                "datetime.now(timezone.utc)",
            )
        # Integer arithmetic on timedelta: exact, unlike datetime.timestamp() (a float).
        return (timestamp - _EPOCH) // _ONE_MS
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        return int(timestamp)
    raise EventValidationError(
        "invalid_timestamp",
        f"timestamp must be a timezone-aware datetime, epoch milliseconds (int) or None, "
        f"got {type(timestamp).__name__}",
    )


def prepare_event(
    customer: str,
    meter: str,
    value: EventValue,
    timestamp: Timestamp = None,
    event_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Prepared:
    """Validate one event against usage event v1 and encode it; raise EventValidationError.

    ``event_id`` defaults to a new UUIDv7; ``timestamp`` to now (epoch ms).
    """
    event_id, payload = encode_event(customer, meter, value, timestamp, event_id, attributes)
    return Prepared(event_id, customer, customer.encode(), payload)


# Memos of the fast path: customers (-> their JSON string literal), meters and value
# strings that passed the full validator. Bounded; they only ever hold accepted strings.
_MEMO_LIMIT = 4096
_customer_json: dict[str, str] = {}
_meters: set[str] = set()
_values: set[str] = set()
# str(Decimal) of a valid value consists of these only (no sign, exponent, NaN, Infinity).
_DIGITS_AND_POINT = "0123456789."


def encode_event(
    customer: str,
    meter: str,
    value: EventValue,
    timestamp: Timestamp = None,
    event_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> tuple[str, bytes]:
    """The id and the JSON bytes of a valid event; raise EventValidationError.

    Fast path, for events without attributes whose customer and meter passed the full
    validator before: the typed arguments are checked directly against the contract's
    rules and the JSON is written by template, equal byte for byte to ``orjson.dumps`` of
    the wire dict. Anything else (or anything the fast path cannot vouch for) goes through
    the wire dict and :func:`streams.core.events.validate_event`, the reference, which
    also produces every error.
    """
    if attributes is None and type(customer) is str and type(meter) is str:
        quoted = _customer_json.get(customer)
        if quoted is not None and meter in _meters:
            if type(value) is Decimal:  # _fast_wire_value's first case, inlined
                text = str(value)
                n = len(text)
                wire = (
                    f'"{text}"'
                    if (n <= 15 or (n == 16 and "." in text))
                    and not text.strip(_DIGITS_AND_POINT)
                    else None
                )
            else:
                wire = _fast_wire_value(value)
            if wire is not None:
                if timestamp is None:
                    ms = time_ns() // 1_000_000
                else:
                    ms = timestamp if type(timestamp) is int else timestamp_ms(timestamp)
                    if not 0 <= ms <= MAX_TIMESTAMP_MS:
                        return _encode_checked(
                            customer, meter, value, timestamp, event_id, attributes)
                if event_id is None:  # a UUIDv7 string is plain ASCII
                    event_id = uuid7_str(ms if timestamp is None else None)
                elif not _plain_id(event_id):
                    return _encode_checked(customer, meter, value, timestamp, event_id, attributes)
                return event_id, (
                    f'{{"id":"{event_id}","customer":{quoted},"meter":"{meter}",'
                    f'"value":{wire},"timestamp":{ms}}}'
                ).encode()
    return _encode_checked(customer, meter, value, timestamp, event_id, attributes)


def _fast_wire_value(value: object) -> str | None:
    """The JSON text of a value the contract surely accepts, or None: ask the validator."""
    if type(value) is Decimal:
        text = str(value)  # no exponent: the same text as format(value, "f")
        n = len(text)
        # Only digits and a point (no sign, exponent, NaN or Infinity): plain notation;
        # up to 15 characters, or 16 with the point, cannot hold more than 15 digits.
        if (n <= 15 or (n == 16 and "." in text)) and not text.strip(_DIGITS_AND_POINT):
            return f'"{text}"'
        return None
    if type(value) is int:
        return str(value) if 0 <= value <= MAX_VALUE_INT else None
    if type(value) is str and value in _values:
        return f'"{value}"'
    return None


def _plain_id(event_id: object) -> bool:
    """Whether ``event_id`` is a valid id that JSON writes as it is (ASCII, no escapes)."""
    return (
        type(event_id) is str
        and 0 < len(event_id) <= MAX_ID_CHARS
        and event_id.isascii()
        and event_id.isprintable()
        and '"' not in event_id
        and "\\" not in event_id
    )


def _encode_checked(
    customer: str,
    meter: str,
    value: EventValue,
    timestamp: Timestamp,
    event_id: str | None,
    attributes: Mapping[str, str] | None,
) -> tuple[str, bytes]:
    """:func:`encode_event` through the wire dict and the reference validator."""
    obj: dict[str, object] = {
        "id": uuid7_str() if event_id is None else event_id,
        "customer": customer,
        "meter": meter,
        "value": wire_value(value),
        "timestamp": timestamp_ms(timestamp),
    }
    if attributes is not None:
        obj["attributes"] = dict(attributes) if isinstance(attributes, Mapping) else attributes
    result = validate_event(obj, customer)
    if isinstance(result, Rejection):
        raise EventValidationError(result.reason, result.detail)
    # Accepted: remember customer, meter and value string for the fast path.
    if type(customer) is str and customer not in _customer_json:
        if len(_customer_json) >= _MEMO_LIMIT:
            _customer_json.clear()
        _customer_json[customer] = orjson.dumps(customer).decode()
    if type(meter) is str and meter not in _meters:
        if len(_meters) >= _MEMO_LIMIT:
            _meters.clear()
        _meters.add(meter)
    if type(value) is str and value not in _values:
        if len(_values) >= _MEMO_LIMIT:
            _values.clear()
        _values.add(value)
    # ``obj`` is exactly what validate_event accepted, already in wire form (value a
    # plain-notation string or an int, timestamp in ms): dump it as it is.
    return result.id, orjson.dumps(obj)
