"""streams.sdk.encode's fast path (typed arguments checked directly, JSON by template) agrees
with the reference path (wire dict, validate_event, orjson) on every input: the same
bytes for an accepted event, the same EventValidationError otherwise."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.sdk.encode
from streams.core.events import UsageEvent, validate_event
from streams.errors import EventValidationError
from streams.sdk.encode import _encode_checked, encode_event

CUSTOMERS = ["c-1", 'quo"te', "back\\slash", "caf\u00e9", "\u6771\u4eac-7", "x" * 128]
METERS = ["cpu_seconds", "gpu.hours-v2"]
VALUES: list[Any] = [
    Decimal("0"), Decimal("0.000"), Decimal("12.5"), Decimal("1E+3"), Decimal("1E-7"),
    Decimal("0.000001"), Decimal("-0"), Decimal("-1"), Decimal("NaN"), Decimal("sNaN"),
    Decimal("Infinity"), Decimal("-Infinity"), Decimal("123456789012345"),
    Decimal("1234567890123456"), Decimal("12345678901234.5"), Decimal("1234567890123.45"),
    Decimal("0.000000000000001"), Decimal("0.1000000000000000000000"),
    Decimal("999999999999999.0"), Decimal(1249) / 8,
    0, 1, -1, 999_999_999_999_999, 1_000_000_000_000_000, True,
    "0", "12.5", "0.0042", "-1", "1e3", "01", "1.", ".5", "1234567890.123456", "",
    1.5, None, [1],
]
TIMESTAMPS: list[Any] = [
    None, 0, 1_795_000_000_000, 2**53 - 1, 2**53, -1, True, 1.5, "2026-11-01T00:00:00Z",
    datetime(2026, 11, 1, 12, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2))),
    datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 1),
]
IDS: list[Any] = [
    None, "e-1", "x" * 128, "x" * 129, "", 'a"b', "a\\b", "caf\u00e9", "a\x7fb", "a\nb",
    "a b", 7,
]


def _outcome(function: Any, *args: Any) -> tuple[str, Any]:
    try:
        event_id, payload = function(*args)
    except EventValidationError as exc:
        return "error", (exc.reason, exc.detail)
    except Exception as exc:  # the same unexpected error either way counts too
        return "raised", type(exc).__name__
    event = orjson.loads(payload)
    assert event["id"] == event_id
    return "ok", payload


def _assert_same(customer: Any, meter: Any, value: Any, timestamp: Any, event_id: Any) -> None:
    """Fast and reference path agree; with a fixed id and time, byte for byte."""
    args = (customer, meter, value, 1_795_000_000_123 if timestamp is None else timestamp,
            "fixed-id" if event_id is None else event_id, None)
    fast = _outcome(encode_event, *args)
    assert fast == _outcome(_encode_checked, *args), args
    if fast[0] == "ok":  # and with a generated id and/or the current time
        generated = _outcome(encode_event, customer, meter, value, timestamp, event_id, None)
        assert generated[0] == "ok"
        assert isinstance(validate_event(orjson.loads(generated[1]), customer), UsageEvent)


def _warm(customer: Any, meter: Any) -> None:
    with contextlib.suppress(EventValidationError):
        _encode_checked(customer, meter, 1, 1, "warm", None)


@pytest.mark.parametrize("customer", CUSTOMERS)
@pytest.mark.parametrize("meter", METERS)
def test_fast_path_equals_reference_on_values(customer: str, meter: str) -> None:
    _warm(customer, meter)
    for value in VALUES:
        _assert_same(customer, meter, value, 1_795_000_000_000, None)
        _assert_same(customer, meter, value, None, None)


def test_fast_path_equals_reference_on_timestamps_and_ids() -> None:
    _warm("c-1", "cpu_seconds")
    for timestamp in TIMESTAMPS:
        for event_id in IDS:
            for value in (Decimal("2.5"), 3, "0.25", 1.5):
                _assert_same("c-1", "cpu_seconds", value, timestamp, event_id)


def test_fast_path_is_taken_and_writes_orjson_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    _warm("caf\u00e9", "cpu_seconds")
    _encode_checked("caf\u00e9", "cpu_seconds", "0.25", 1, "warm", None)

    def reference_path(*args: Any) -> None:
        raise AssertionError(f"not the fast path: {args}")

    monkeypatch.setattr(streams.sdk.encode, "_encode_checked", reference_path)
    for value in (Decimal("0.001"), Decimal(10**14), 0, "0.25"):
        encode_event("caf\u00e9", "cpu_seconds", value)
        encode_event("caf\u00e9", "cpu_seconds", value, 2**53 - 1, "x" * 128)
        encode_event("caf\u00e9", "cpu_seconds", value, datetime.now(UTC), "a b/c")
    event_id, payload = encode_event("caf\u00e9", "cpu_seconds", Decimal("12.50"), 5, "e-1")
    assert event_id == "e-1"
    assert payload == orjson.dumps({"id": "e-1", "customer": "caf\u00e9", "meter": "cpu_seconds",
                                    "value": "12.50", "timestamp": 5})
    event_id, payload = encode_event("caf\u00e9", "cpu_seconds", 7)
    decoded = orjson.loads(payload)
    assert decoded["id"] == event_id and decoded["value"] == 7
    assert abs(decoded["timestamp"] - datetime.now(UTC).timestamp() * 1000) < 60_000


def test_unvalidated_customer_or_meter_takes_the_reference_path() -> None:
    with pytest.raises(EventValidationError) as info:
        encode_event("never seen\n", "cpu_seconds", 1)
    assert info.value.reason == "invalid_customer"
    with pytest.raises(EventValidationError) as info:
        encode_event("c-1", "Never_Seen", 1)
    assert info.value.reason == "invalid_meter"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**17), max_value=10**17),
        st.from_regex(r"-?[0-9]{0,18}(\.[0-9]{0,6})?(e[0-9])?", fullmatch=True),
    ),
    timestamp=st.one_of(st.none(), st.integers(min_value=-5, max_value=2**53 + 5)),
    event_id=st.one_of(st.none(), st.text(max_size=130)),
)
def test_fast_path_equals_reference_property(value: Any, timestamp: Any, event_id: Any) -> None:
    _warm("c-1", "cpu_seconds")
    _assert_same("c-1", "cpu_seconds", value, timestamp, event_id)
    # A value string the reference accepted is remembered: the fast path again.
    _assert_same("c-1", "cpu_seconds", value, timestamp, event_id)
