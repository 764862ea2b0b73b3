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

from streams.core.events import Rejection, validate_event
from streams.errors import EventValidationError
from streams.uuid7 import uuid7_str

__all__ = [
    "EventValue", "Prepared", "Timestamp", "prepare_event", "timestamp_ms", "wire_value",
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
    # ``obj`` is exactly what validate_event accepted, already in wire form (value a
    # plain-notation string or an int, timestamp in ms): dump it as it is.
    return Prepared(result.id, result.customer, customer.encode(), orjson.dumps(obj))
