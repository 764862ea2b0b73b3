"""The aggregator's decoder: usage.events records to compact event tuples, values in units.

:func:`scan_record` accepts and rejects exactly what :func:`streams.core.events.
decode_record` does (a property test compares them on arbitrary input), but skips the
work the aggregator does not need on the common path: no :class:`UsageEvent`, no
``Decimal``. Each event is a tuple ``(index, id, meter, units, timestamp_ms, element)``:

- ``index``: its position in a packed array (0 for a single event);
- ``units``: the value times ``10**VALUE_SCALE``, an int (see streams.core.money);
- ``element``: None for an event of exactly the five fields, else the decoded JSON
  object (it has attributes), kept to rebuild the event's bytes for a dead letter (the
  aggregator's rare semantic rejections). Not keeping the common one lets the decoded
  objects die at once instead of being traversed by the garbage collector until the
  batch ends.

The customer is the record key (a valid event's customer always equals it).

How it stays exact: an element takes the fast path only when every field is in a shape
the full rules accept outright (exactly the five fields; an ASCII printable id of 1..128
characters; a customer equal to the key and already validated; a meter already validated;
a value string in plain notation short enough that it cannot hold 16 significant digits,
or an integer in range; an epoch ms integer in range or an RFC 3339 string). Anything else
goes through :func:`streams.core.events.validate_event`, which decides and names the
rejection. So the fast path only ever accepts what the full rules accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from streams.core.events import (
    MAX_ID_CHARS,
    MAX_PACKED_EVENTS,
    MAX_RECORD_BYTES,
    MAX_TIMESTAMP_MS,
    MAX_VALUE_INT,
    Rejection,
    UsageEvent,
    _element_bytes,
    _kept,
    _valid_customers,
    _valid_meters,
    decode_record,
    validate_event,
)
from streams.core.money import VALUE_SCALE, to_units
from streams.core.rfc3339 import rfc3339_ms

__all__ = ["EventTuple", "scan_record"]

EventTuple = tuple[int, str, str, int, int, Any]

# 10**(VALUE_SCALE - k): the units of one unit of the k-th fraction digit.
_POW: Final[tuple[int, ...]] = tuple(10 ** (VALUE_SCALE - k) for k in range(VALUE_SCALE + 1))
_ONE_UNIT: Final[int] = _POW[0]
_SHORT_VALUE: Final = 15  # characters (16 with a point) that cannot exceed 15 digits


def _units_of(raw: object) -> int | None:
    """Units of a value in a shape the full rule accepts outright, else None."""
    if type(raw) is str:
        n = len(raw)
        if not raw.isascii():
            return None
        whole, dot, fraction = raw.partition(".")
        if n > _SHORT_VALUE and not (n == _SHORT_VALUE + 1 and dot):
            return None
        # isdigit() of ASCII text is [0-9]+ (and False for "")
        if not whole.isdigit() or (whole[0] == "0" and len(whole) > 1):
            return None
        if dot:
            if not fraction.isdigit():
                return None
            return int(whole + fraction) * _POW[len(fraction)]
        return int(whole) * _ONE_UNIT
    if type(raw) is int and 0 <= raw <= MAX_VALUE_INT:
        return raw * _ONE_UNIT
    return None


def _fast(obj: object, key: str, index: int) -> EventTuple | None:
    """The event tuple of ``obj`` when it takes the fast path, else None."""
    if type(obj) is not dict or len(obj) != 5:
        return None
    try:
        id_ = obj["id"]
        customer = obj["customer"]
        meter = obj["meter"]
        raw_value = obj["value"]
        ts = obj["timestamp"]
    except KeyError:
        return None
    if (type(id_) is not str or not 0 < len(id_) <= MAX_ID_CHARS or not id_.isascii()
            or not id_.isprintable()):
        return None
    # customer == key (a str) makes it a str; a validated one is in the memo
    if customer != key or customer not in _valid_customers:
        return None
    if type(meter) is not str or meter not in _valid_meters:
        return None
    if type(raw_value) is str:
        n = len(raw_value)
        whole, dot, fraction = raw_value.partition(".")
        if (n <= _SHORT_VALUE or (n == _SHORT_VALUE + 1 and dot)) and raw_value.isascii() \
                and whole.isdigit() and (whole[0] != "0" or len(whole) == 1):
            if not dot:
                units = int(whole) * _ONE_UNIT
            elif fraction.isdigit():
                units = int(whole + fraction) * _POW[len(fraction)]
            else:
                return None
        else:
            return None
    else:
        found = _units_of(raw_value)
        if found is None:
            return None
        units = found
    if type(ts) is int:
        if not 0 <= ts <= MAX_TIMESTAMP_MS:
            return None
    elif type(ts) is str:
        ts = rfc3339_ms(ts)
        if ts is None:
            return None
    else:
        return None
    return (index, id_, meter, units, ts, None)


def _from_event(index: int, ev: UsageEvent, element: object) -> EventTuple:
    return (index, ev.id, ev.meter, to_units(ev.value, VALUE_SCALE), ev.timestamp_ms, element)


def scan_record(value: bytes | None, key: str
                ) -> tuple[Sequence[EventTuple], Sequence[Rejection]]:
    """Decode one record into event tuples and rejections, as ``decode_record`` would.

    ``key`` is the record key ("" for a record without one: its events are key_mismatch).
    A valid single event comes back in tuples, not lists: the caller keeps them until the
    batch ends, and lists are what the garbage collector has to keep traversing.
    """
    if value is None or len(value) > MAX_RECORD_BYTES:
        return [], decode_record(value, key)[1]
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [], decode_record(value, key)[1]
    if type(obj) is dict:
        ev = _fast(obj, key, 0)
        if ev is not None:
            return (ev,), ()
        result = validate_event(obj, key)
        if isinstance(result, UsageEvent):
            return [_from_event(0, result, obj)], []
        return [], [Rejection(result.reason, result.detail, None, _kept(value))]
    if type(obj) is not list or not 0 < len(obj) <= MAX_PACKED_EVENTS:
        return [], decode_record(value, key)[1]
    out: list[EventTuple] = []
    rejections: list[Rejection] = []
    for index, element in enumerate(obj):
        ev = _fast(element, key, index)
        if ev is not None:
            out.append(ev)
            continue
        result = validate_event(element, key)
        if isinstance(result, UsageEvent):
            out.append(_from_event(index, result, element))
        else:
            rejections.append(Rejection(result.reason, result.detail, index,
                                        _element_bytes(element, value)))
    return out, rejections
