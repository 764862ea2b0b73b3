"""The aggregator's decoder: usage.events records to compact event tuples, values in units.

:func:`scan_record` accepts and rejects exactly what :func:`streams.core.events.
decode_record` does (a property test compares them on arbitrary input), but skips the
work the aggregator does not need on the common path: no :class:`UsageEvent`, no
``Decimal``. Each event is a tuple ``(index, id, meter, units, timestamp_ms, element)``:

- ``index``: its position in a packed array (0 for a single event);
- ``units``: the value times ``10**scale``, an int (see streams.core.money; ``scale`` is
  the caller's, :data:`~streams.core.money.VALUE_SCALE` unless it asks for fewer places:
  a valid value with more places than it asked for raises
  :class:`~streams.core.money.TooPrecise`);
- ``element``: None for an event of exactly the five fields, else the decoded JSON
  object (it has attributes), kept to rebuild the event's bytes for a dead letter (the
  aggregator's rare semantic rejections). Not keeping the common one lets the decoded
  objects die at once instead of being traversed by the garbage collector until the
  batch ends.

The customer is the record key (a valid event's customer always equals it).

One fast path, one exact fallback. msgspec (a C library) decodes the record straight
into typed structs (:class:`streams.core.wire.WireEvent`: exactly the five fields, ``id``,
``customer`` and ``meter`` strings, ``value`` and ``timestamp`` an int or a string), with
no dict per event and no Python check of shapes and types; the struct's fields then take
the checks below. If msgspec refuses the record for any reason (not JSON to it, another
shape, a sixth field, a field of another type) or any event of it fails a check, the whole
record goes the exact way: orjson and :func:`streams.core.events.validate_event` per event,
which decides and names each rejection. This module is compiled with mypyc (the struct
lives in streams.core.wire, which mypyc cannot compile).

How the fast path stays exact: it accepts an event only when every field is in a shape the
full rules accept outright: an ASCII printable id of 1..128 characters; a customer equal to
the key, which passes the full rule (an ASCII printable key of 1..128 characters, or one in
the memo of validated customers); a meter that already passed it (the memo); a
value string in plain notation short enough that it cannot hold 16 significant digits, or
an integer in range; an epoch ms integer in range or an RFC 3339 string. Where msgspec's
JSON reading could differ from orjson's (escapes, invalid UTF-8, huge integers), the
checks close the gap: every string it hands over must be ASCII text, an RFC 3339 date or a
member of a memo that only orjson-decoded, validated text enters, and every integer passes
a range check. A record whose bytes are ASCII with no backslash and no DEL byte decodes to
printable ASCII strings only (JSON refuses the other control bytes in a string), so its
events skip the per-string ASCII and printable checks. The agreement property test
(tests/unit/test_scan_agreement.py) runs both decoders on arbitrary input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from msgspec.structs import astuple

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
    _remember,
    _valid_customers,
    _valid_meters,
    decode_record,
    validate_event,
)
from streams.core.money import VALUE_SCALE, to_units, unit_pows
from streams.core.rfc3339 import rfc3339_ms
from streams.core.wire import DecodeFailed, WireEvent, decode_wire

__all__ = ["EventTuple", "scan_record"]

EventTuple = tuple[int, str, str, int, int, Any]

_SHORT_VALUE: Final = 15  # characters (16 with a point) that cannot exceed 15 digits


def _plain(value: bytes) -> bool:
    """Whether every string msgspec decodes from ``value`` is printable ASCII: the record
    is ASCII, has no escape (a backslash) and no DEL byte; JSON, and msgspec, refuse the
    other control bytes inside a string."""
    return value.isascii() and value.find(b"\\") < 0 and value.find(b"\x7f") < 0


def _valid_key(key: str) -> bool:
    """Whether ``key`` passes the full customer rule (events._check_text_id): in the memo
    of validated customers, or checked outright as ASCII printable text of 1..MAX_ID_CHARS
    characters, and then remembered. (The memo is bounded: past it, a key that is not in it
    any more is checked again, where it used to send its record the exact way.)"""
    if key in _valid_customers:
        return True
    if 0 < len(key) <= MAX_ID_CHARS and key.isascii() and key.isprintable():
        _remember(_valid_customers, key)
        return True
    return False


def _typed(ev: WireEvent, key: str, index: int, plain: bool, pows: tuple[int, ...]
           ) -> EventTuple | None:
    """The event tuple of a decoded struct when every field is in a shape the full rules
    accept outright (the caller has checked that ``key`` is a valid customer), else
    None. ``plain``: the record's strings are all printable ASCII (:func:`_plain`).
    ``pows``: :func:`~streams.core.money.unit_pows` of the scale (a value with more places
    than it has goes the exact way, which decides it)."""
    # One C call for the five fields (WireEvent's order), not five attribute lookups.
    fields: tuple[str, str, str, str | int, str | int] = astuple(ev)
    id_, customer, meter, raw_value, raw_ts = fields
    if (not 0 < len(id_) <= MAX_ID_CHARS or customer != key or meter not in _valid_meters
            or not (plain or (id_.isascii() and id_.isprintable()))):
        return None
    if isinstance(raw_value, str):
        n = len(raw_value)
        whole, dot, fraction = raw_value.partition(".")
        if (n <= _SHORT_VALUE or (n == _SHORT_VALUE + 1 and dot)) \
                and (plain or raw_value.isascii()) \
                and whole.isdigit() and (whole[0] != "0" or len(whole) == 1):
            if not dot:
                units = int(whole) * pows[0]
            elif fraction.isdigit() and len(fraction) < len(pows):
                units = int(whole + fraction) * pows[len(fraction)]
            else:
                return None
        else:
            return None
    elif 0 <= raw_value <= MAX_VALUE_INT:
        units = raw_value * pows[0]
    else:
        return None
    if isinstance(raw_ts, int):
        if not 0 <= raw_ts <= MAX_TIMESTAMP_MS:
            return None
        return (index, id_, meter, units, raw_ts, None)
    ts = rfc3339_ms(raw_ts)
    return None if ts is None else (index, id_, meter, units, ts, None)


def _from_event(index: int, ev: UsageEvent, element: object, scale: int) -> EventTuple:
    return (index, ev.id, ev.meter, to_units(ev.value, scale), ev.timestamp_ms, element)


def scan_record(value: bytes | None, key: str, scale: int = VALUE_SCALE
                ) -> tuple[Sequence[EventTuple], Sequence[Rejection]]:
    """Decode one record into event tuples and rejections, as ``decode_record`` would.

    ``key`` is the record key ("" for a record without one: its events are key_mismatch).
    A valid single event comes back in tuples, not lists: the caller keeps them until the
    batch ends, and lists are what the garbage collector has to keep traversing.
    Values come in units of ``10**-scale``.
    """
    if value is None or len(value) > MAX_RECORD_BYTES:
        return [], decode_record(value, key)[1]
    try:
        decoded = decode_wire(value)
    except DecodeFailed:
        decoded = None
    if decoded is not None and _valid_key(key):
        if isinstance(decoded, WireEvent):
            # (One event: checking its strings costs less than checking the record.)
            ev = _typed(decoded, key, 0, False, unit_pows(scale))
            if ev is not None:
                return (ev,), ()
        elif 0 < len(decoded) <= MAX_PACKED_EVENTS:
            plain, pows = _plain(value), unit_pows(scale)
            typed: list[EventTuple] = []
            for i, d in enumerate(decoded):
                ev = _typed(d, key, i, plain, pows)
                if ev is None:
                    break  # the exact way decides this record
                typed.append(ev)
            else:
                return typed, ()
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [], decode_record(value, key)[1]
    if type(obj) is dict:
        result = validate_event(obj, key)
        if isinstance(result, UsageEvent):
            return [_from_event(0, result, obj, scale)], []
        return [], [Rejection(result.reason, result.detail, None, _kept(value))]
    if type(obj) is not list or not 0 < len(obj) <= MAX_PACKED_EVENTS:
        return [], decode_record(value, key)[1]
    out: list[EventTuple] = []
    rejections: list[Rejection] = []
    for index, element in enumerate(obj):
        result = validate_event(element, key)
        if isinstance(result, UsageEvent):
            out.append(_from_event(index, result, element, scale))
        else:
            rejections.append(Rejection(result.reason, result.detail, index,
                                        _element_bytes(element, value)))
    return out, rejections
