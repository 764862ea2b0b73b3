"""The usage event v1 contract: a fast validator and decoder of ``usage.events`` records.

:func:`decode_record` turns one Kafka record value (bytes) into events and rejections;
:func:`validate_event` checks one decoded JSON object. Both implement
``schemas/usage_event.v1.json`` and ``schemas/usage_record.v1.json`` exactly (a property
test proves that the schema and this module accept the same objects), without a generic
schema validator on the hot path: orjson, exact type checks (JSON ``true`` is not an
integer) and precompiled regexes.

Rules, in the order they are checked (the first failing rule names the rejection):

1. the record: at most :data:`MAX_RECORD_BYTES` (``record_too_large``), UTF-8 JSON
   (``invalid_json``), an object or an array of 1..:data:`MAX_PACKED_EVENTS` objects
   (``invalid_shape``);
2. per event: fields ``id customer meter value timestamp`` present (``missing_field``),
   nothing but those and ``attributes`` (``unknown_field``), then ``invalid_id``,
   ``invalid_customer``, ``invalid_meter``, ``invalid_value`` / ``too_many_digits``,
   ``invalid_timestamp``, ``invalid_attributes``, and last ``key_mismatch``.

Decisions the schema documents too:

- ``value``: a JSON string in plain notation (``0``, ``12.5``, ``0.0042``; no sign,
  exponent, leading zeros or bare point), at most 64 characters, or a JSON integer
  0..999_999_999_999_999. A JSON number written with a fraction or exponent (``1.5``,
  ``1.0``, ``1e3``) is ``invalid_value``: it would pass through a binary float.
- significant digits (max 15) are counted in the plain-notation reading, see
  :func:`streams.core.money.significant_digits`: leading zeros and trailing zeros of the
  fraction do not count, trailing zeros of the integer part do. So a valid value is
  below 10**15, and integer and string forms agree (``1000000000000000000`` is rejected
  either way).
- ``timestamp``: an RFC 3339 date-time ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+hh:mm|-hh:mm)``
  (``T`` and ``Z`` in either case, no leap second 60, years 2000..9999), or integer
  epoch milliseconds 0..2**53-1. Fractions below a millisecond are truncated.
- strings ``id`` and ``customer``: 1..128 code points, none of U+0000..U+001F,
  U+007F..U+009F.

JSON Schema counts ``1.0`` as an integer; this module (and the contract) does not, which is
the one place where a standard schema validator is more lenient (pinned by a test).

Speed: bounded module-level memos make repeated meters, customers, attribute names, value
strings and timestamp parts (minute prefix, fraction+offset suffix) cost one dict lookup.
They only ever hold strings that passed the full rule, so they never change a result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson

from streams.core.money import format_decimal
from streams.core.rfc3339 import rfc3339_ms

__all__ = [
    "MAX_ORIGINAL_BYTES",
    "MAX_PACKED_EVENTS",
    "MAX_RECORD_BYTES",
    "MAX_SIGNIFICANT_DIGITS",
    "REASONS",
    "TOO_LARGE_ORIGINAL_BYTES",
    "Rejection",
    "UsageEvent",
    "decode_record",
    "encode_event",
    "validate_event",
]

MAX_RECORD_BYTES: Final = 1_048_576
"""Largest record value accepted, in bytes (1 MiB); larger ones are not parsed."""
MAX_PACKED_EVENTS: Final = 10_000
"""Most events one packed record (a JSON array) may carry."""
MAX_SIGNIFICANT_DIGITS: Final = 15
"""Stripe's limit on a meter event value."""
TOO_LARGE_ORIGINAL_BYTES: Final = 65_536
"""How many leading bytes of a too-large record a ``record_too_large`` rejection keeps, so
that its dead letter still fits in one Kafka message."""

MAX_ORIGINAL_BYTES: Final = 524_288
"""Most bytes of the offending input any other rejection keeps (its leading bytes), so that
a dead letter of a record just under :data:`MAX_RECORD_BYTES` still fits in one Kafka
message once base64-encoded."""

MAX_ID_CHARS: Final = 128
MAX_VALUE_CHARS: Final = 64
MAX_VALUE_INT: Final = 999_999_999_999_999
MAX_TIMESTAMP_MS: Final = 2**53 - 1
MAX_ATTRIBUTES: Final = 16
MAX_ATTRIBUTE_VALUE_CHARS: Final = 256

REASONS: Final = frozenset(
    {
        "invalid_json",
        "invalid_shape",
        "missing_field",
        "unknown_field",
        "invalid_id",
        "invalid_customer",
        "invalid_meter",
        "invalid_value",
        "too_many_digits",
        "invalid_timestamp",
        "invalid_attributes",
        "key_mismatch",
        "record_too_large",
    }
)
"""Schema-level rejection reasons (the DLQ ``reason``); semantic ones live in the core."""


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One valid usage event.

    id: 1..128 chars, no control characters; unique per customer.
    customer: 1..128 chars, no control characters; equals the record key.
    meter: matches ``^[a-z][a-z0-9_.-]{0,63}$``; not yet checked against known meters.
    value: exact, finite, >= 0, < 10**15, at most 15 significant digits.
    timestamp_ms: event time in Unix epoch milliseconds (UTC), 0..2**53-1.
    attributes: None when absent, else <= 16 entries of str -> str (<= 256 chars);
        a fresh dict owned by this event, to be treated as read-only.
    """

    id: str
    customer: str
    meter: str
    value: Decimal
    timestamp_ms: int
    attributes: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record, or one event of a packed record, was refused.

    reason: one of :data:`REASONS`.
    detail: human readable, <= 500 chars; quotes at most ~60 chars of the input.
    index: position of the event in a packed array, None for a single event or a record.
    original: the offending event's bytes (re-serialized for an element of a packed
        array; the whole record for an element nested too deeply to re-serialize), the
        whole record when it could not be decoded, its first
        :data:`TOO_LARGE_ORIGINAL_BYTES` bytes when too large, and ``b""`` from
        :func:`validate_event`; never more than its first :data:`MAX_ORIGINAL_BYTES`.
    """

    reason: str
    detail: str
    index: int | None
    original: bytes


_REQUIRED: Final = ("id", "customer", "meter", "value", "timestamp")
_ALLOWED: Final = frozenset((*_REQUIRED, "attributes"))

# A control character: C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_METER = re.compile(r"[a-z][a-z0-9_.-]{0,63}", re.ASCII)
_ATTR_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
# Plain notation: integer part, optional fraction (group 2).
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?", re.ASCII)
# Memos of valid meters, customers, attribute names and value strings (-> Decimal, which
# is immutable): the events of a batch share many. Only validated strings enter. Bounded;
# cleared when full. (Timestamp memos live in streams.core.rfc3339.)
_MEMO_LIMIT: Final = 4096
_valid_meters: set[str] = set()
_valid_customers: set[str] = set()
_valid_attribute_names: set[str] = set()
_decimal_memo: dict[str, Decimal] = {}

# Setters of UsageEvent's slots, for building validated events fast (see validate_event).
_new_object = object.__new__


def _slot_setter(name: str) -> Callable[[UsageEvent, object], None]:
    setter: Callable[[UsageEvent, object], None] = vars(UsageEvent)[name].__set__
    return setter


_set_id, _set_customer, _set_meter, _set_value, _set_timestamp_ms, _set_attributes = (
    _slot_setter(name)
    for name in ("id", "customer", "meter", "value", "timestamp_ms", "attributes")
)


def _remember(memo: set[str], text: str) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo.add(text)


def _clip(text: str) -> str:
    """``text`` quoted for a detail message: at most ~60 chars of it."""
    return repr(text) if len(text) <= 48 else repr(text[:48]) + "..."


def _kind(value: object) -> str:
    """The JSON type name of a decoded value, for detail messages."""
    t = type(value)
    if t is dict:
        return "object"
    if t is list:
        return "array"
    if t is str:
        return "string"
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "number with a fraction or exponent"
    if value is None:
        return "null"
    return t.__name__


def _kept(original: bytes) -> bytes:
    """At most the first MAX_ORIGINAL_BYTES of ``original``."""
    return original if len(original) <= MAX_ORIGINAL_BYTES else original[:MAX_ORIGINAL_BYTES]


def _element_bytes(element: object, record: bytes) -> bytes:
    """The bytes of one element of a packed record, for its rejection."""
    try:
        return _kept(orjson.dumps(element))
    except orjson.JSONEncodeError:  # nested deeper than orjson.dumps allows (254 levels)
        return _kept(record)


def _reject(reason: str, detail: str) -> Rejection:
    return Rejection(reason, detail, None, b"")


def _check_text_id(value: object, field: str) -> str | None:
    """None if ``value`` is a valid id/customer string, else why not."""
    if type(value) is not str:
        return f"{field} must be a string, got {_kind(value)}"
    n = len(value)
    if n == 0:
        return f"{field} must not be empty"
    if n > MAX_ID_CHARS:
        return f"{field} has {n} characters (max {MAX_ID_CHARS})"
    # An ASCII printable string has no control character: skip the regex.
    if not (value.isascii() and value.isprintable()) and _CONTROL.search(value):
        return f"{field} contains a control character: {_clip(value)}"
    return None


def _parse_value(value: object) -> Decimal | Rejection:
    if type(value) is str:
        match = _DECIMAL.fullmatch(value)
        if match is None:
            return _reject(
                "invalid_value",
                f"value {_clip(value)} is not a non-negative decimal in plain notation",
            )
        n = len(value)
        # Up to 15 characters, or 16 with a point, cannot hold more than 15 digits.
        if n <= MAX_SIGNIFICANT_DIGITS or (n == MAX_SIGNIFICANT_DIGITS + 1 and "." in value):
            if len(_decimal_memo) >= _MEMO_LIMIT:
                _decimal_memo.clear()
            decimal = _decimal_memo[value] = Decimal(value)
            return decimal
        if n > MAX_VALUE_CHARS:
            return _reject("too_many_digits", f"value has {n} characters (max {MAX_VALUE_CHARS})")
        whole, fraction = match.group(1, 2)
        fraction = fraction.rstrip("0") if fraction else ""
        sig = len(fraction.lstrip("0")) if whole == "0" else len(whole) + len(fraction)
        if sig > MAX_SIGNIFICANT_DIGITS:
            return _reject(
                "too_many_digits",
                f"value has {sig} significant digits (max {MAX_SIGNIFICANT_DIGITS})",
            )
        return Decimal(value)
    if type(value) is int:
        if value < 0:
            return _reject("invalid_value", "value must be >= 0")
        if value > MAX_VALUE_INT:
            # Integer trailing zeros count: the largest valid integer has 15 nines.
            return _reject(
                "too_many_digits",
                f"integer value exceeds {MAX_VALUE_INT} (max {MAX_SIGNIFICANT_DIGITS} digits)",
            )
        return Decimal(value)
    if type(value) is float:
        return _reject(
            "invalid_value",
            "value is a JSON number with a fraction or exponent; send a decimal string "
            'such as "12.5" or an integer',
        )
    return _reject(
        "invalid_value", f"value must be a decimal string or integer, got {_kind(value)}"
    )


def _parse_timestamp(value: object) -> int | Rejection:
    if type(value) is str:
        ms = rfc3339_ms(value)
        if ms is not None:
            return ms
        return _reject(
            "invalid_timestamp",
            f"timestamp {_clip(value)} is not an RFC 3339 date-time with offset "
            "(years 2000-9999), e.g. 2026-11-05T12:00:00Z",
        )
    if type(value) is int:
        if 0 <= value <= MAX_TIMESTAMP_MS:
            return value
        return _reject("invalid_timestamp", "timestamp in epoch ms must be 0..2**53-1")
    return _reject(
        "invalid_timestamp",
        f"timestamp must be an RFC 3339 string or epoch ms integer, got {_kind(value)}",
    )


def _parse_attributes(value: object) -> dict[str, str] | Rejection:
    if type(value) is not dict:
        return _reject("invalid_attributes", f"attributes must be an object, got {_kind(value)}")
    attrs: dict[Any, Any] = value
    if len(attrs) > MAX_ATTRIBUTES:
        return _reject(
            "invalid_attributes", f"attributes has {len(attrs)} entries (max {MAX_ATTRIBUTES})"
        )
    for name, text in attrs.items():
        if type(name) is not str or name not in _valid_attribute_names:
            if type(name) is not str or _ATTR_KEY.fullmatch(name) is None:
                shown = _clip(name) if type(name) is str else _kind(name)
                return _reject(
                    "invalid_attributes",
                    f"attribute name {shown} must match [A-Za-z0-9_.-]{{1,64}}",
                )
            _remember(_valid_attribute_names, name)
        if type(text) is not str or len(text) > MAX_ATTRIBUTE_VALUE_CHARS:
            problem = (
                f"must be a string, got {_kind(text)}"
                if type(text) is not str
                else f"has {len(text)} characters (max {MAX_ATTRIBUTE_VALUE_CHARS})"
            )
            return _reject("invalid_attributes", f"attribute {_clip(name)} {problem}")
    return dict(attrs)


def validate_event(obj: object, key: str | None = None) -> UsageEvent | Rejection:
    """Check one decoded JSON value against usage event v1.

    ``obj`` is what :func:`orjson.loads` produced (dict, list, str, int, float, bool,
    None). ``key`` is the record key (the customer id) or None to skip the key check.
    Returns the event, or a :class:`Rejection` with ``index=None`` and ``original=b""``
    (the caller knows the bytes). Never raises for any input.
    """
    if type(obj) is not dict:
        return _reject("invalid_shape", f"an event must be a JSON object, got {_kind(obj)}")
    event: dict[Any, Any] = obj
    try:
        id_ = event["id"]
        customer = event["customer"]
        meter = event["meter"]
        raw_value = event["value"]
        raw_timestamp = event["timestamp"]
    except KeyError:
        missing = next(name for name in _REQUIRED if name not in event)
        return _reject("missing_field", f"missing required field {missing!r}")
    has_attributes = "attributes" in event
    if len(event) != 5 + has_attributes:
        extra = sorted(repr(k) if type(k) is str else _kind(k) for k in event if k not in _ALLOWED)
        shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
        return _reject("unknown_field", f"unknown field(s) {_clip(shown)}")

    # Each rule has an inlined fast path for the common case (memo hits, ASCII text) and
    # falls back to a helper holding the exact rule.
    if not (
        type(id_) is str and 0 < len(id_) <= MAX_ID_CHARS and id_.isascii() and id_.isprintable()
    ):
        problem = _check_text_id(id_, "id")
        if problem is not None:
            return _reject("invalid_id", problem)
    if type(customer) is not str or customer not in _valid_customers:
        problem = _check_text_id(customer, "customer")
        if problem is not None:
            return _reject("invalid_customer", problem)
        _remember(_valid_customers, customer)
    if type(meter) is not str or meter not in _valid_meters:
        if type(meter) is not str or _METER.fullmatch(meter) is None:
            shown = _clip(meter) if type(meter) is str else _kind(meter)
            return _reject("invalid_meter", f"meter {shown} must match ^[a-z][a-z0-9_.-]{{0,63}}$")
        _remember(_valid_meters, meter)

    value = _decimal_memo.get(raw_value) if type(raw_value) is str else None
    if value is None:
        parsed_value = _parse_value(raw_value)
        if isinstance(parsed_value, Rejection):
            return parsed_value
        value = parsed_value

    timestamp_ms = None
    if type(raw_timestamp) is str:
        timestamp_ms = rfc3339_ms(raw_timestamp)
    elif type(raw_timestamp) is int and 0 <= raw_timestamp <= MAX_TIMESTAMP_MS:
        timestamp_ms = raw_timestamp
    if timestamp_ms is None:
        parsed_timestamp = _parse_timestamp(raw_timestamp)
        if isinstance(parsed_timestamp, Rejection):
            return parsed_timestamp
        timestamp_ms = parsed_timestamp

    attributes: dict[str, str] | None = None
    if has_attributes:
        parsed_attributes = _parse_attributes(event["attributes"])
        if isinstance(parsed_attributes, Rejection):
            return parsed_attributes
        attributes = parsed_attributes

    if key is not None and customer != key:
        return _reject(
            "key_mismatch", f"customer {_clip(customer)} differs from the record key {_clip(key)}"
        )
    # The same object UsageEvent(...) builds, set through the slot descriptors: the frozen
    # dataclass __init__'s six object.__setattr__ calls would double the cost of this call.
    result: UsageEvent = _new_object(UsageEvent)
    _set_id(result, id_)
    _set_customer(result, customer)
    _set_meter(result, meter)
    _set_value(result, value)
    _set_timestamp_ms(result, timestamp_ms)
    _set_attributes(result, attributes)
    return result


def decode_record(value: bytes | None, key: str | None) -> tuple[list[UsageEvent], list[Rejection]]:
    """Decode one ``usage.events`` record value into its valid events and its rejections.

    ``value`` is the raw record value (None for a null value), ``key`` the record key
    decoded as UTF-8 (None skips the key check). A single event yields one event or one
    rejection whose ``original`` is ``value``. A packed record (a JSON array) yields one
    entry per element, in order: a bad element becomes its own rejection, with its
    ``index`` and ``original = orjson.dumps(element)``, and does not affect the others.
    A record that is not JSON, too large, or not an object/array of 1..10,000 yields one
    rejection with ``index=None``. Never raises.
    """
    if value is None:
        return [], [Rejection("invalid_json", "record value is null", None, b"")]
    size = len(value)
    if size > MAX_RECORD_BYTES:
        return [], [
            Rejection(
                "record_too_large",
                f"record has {size} bytes (max {MAX_RECORD_BYTES})",
                None,
                bytes(value[:TOO_LARGE_ORIGINAL_BYTES]),
            )
        ]
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson's messages name the problem and position, never the input's content.
        return [], [
            Rejection("invalid_json", f"not UTF-8 JSON: {str(exc)[:200]}", None, _kept(value))
        ]

    if type(obj) is dict:
        result = validate_event(obj, key)
        if isinstance(result, UsageEvent):
            return [result], []
        return [], [Rejection(result.reason, result.detail, None, _kept(value))]
    if type(obj) is not list:
        return [], [
            Rejection(
                "invalid_shape",
                f"a record must be a JSON object or array, got {_kind(obj)}",
                None,
                _kept(value),
            )
        ]
    count = len(obj)
    if count == 0 or count > MAX_PACKED_EVENTS:
        return [], [
            Rejection(
                "invalid_shape",
                f"a packed record holds 1..{MAX_PACKED_EVENTS} events, got {count}",
                None,
                _kept(value),
            )
        ]
    events: list[UsageEvent] = []
    rejections: list[Rejection] = []
    append = events.append
    for index, element in enumerate(obj):
        result = validate_event(element, key)
        if isinstance(result, UsageEvent):
            append(result)
        else:
            rejections.append(
                Rejection(result.reason, result.detail, index, _element_bytes(element, value))
            )
    return events, rejections


def encode_event(ev: UsageEvent) -> dict[str, object]:
    """The wire dict of ``ev``: value as a plain-notation string, timestamp as epoch ms.

    ``validate_event(encode_event(ev)) == ev`` for any valid event except that value
    trailing zeros are dropped (an equal Decimal) and ``attributes`` is omitted when None.
    """
    wire: dict[str, object] = {
        "id": ev.id,
        "customer": ev.customer,
        "meter": ev.meter,
        "value": format_decimal(ev.value),
        "timestamp": ev.timestamp_ms,
    }
    if ev.attributes is not None:
        wire["attributes"] = dict(ev.attributes)
    return wire
