"""streams.core.events: each rule of usage event v1, the record decoder and the encoder."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core import events, rfc3339
from streams.core.events import (
    MAX_PACKED_EVENTS,
    MAX_RECORD_BYTES,
    REASONS,
    TOO_LARGE_ORIGINAL_BYTES,
    Rejection,
    UsageEvent,
    decode_record,
    encode_event,
    validate_event,
)

EVENT: dict[str, Any] = {
    "id": "0190a0b1-7c3e-7d2a-9f00-123456789abc",
    "customer": "c-1",
    "meter": "cpu_seconds",
    "value": "12.5",
    "timestamp": "2026-11-05T12:00:00Z",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def event(**changes: Any) -> dict[str, Any]:
    """EVENT with fields replaced; a value of ... removes the field."""
    out = dict(EVENT)
    for name, value in changes.items():
        if value is ...:
            del out[name]
        else:
            out[name] = value
    return out


def reason_of(obj: object, key: str | None = None) -> str:
    result = validate_event(obj, key)
    assert isinstance(result, Rejection), result
    assert result.reason in REASONS
    assert result.index is None and result.original == b""
    assert 0 < len(result.detail) <= 500
    return result.reason


def ms(iso: str) -> int:
    return (datetime.fromisoformat(iso) - EPOCH) // timedelta(milliseconds=1)


def test_public_api_is_pinned() -> None:
    assert sorted(events.__all__) == sorted(
        [
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
    )
    assert MAX_RECORD_BYTES == 1_048_576 and MAX_PACKED_EVENTS == 10_000
    assert len(REASONS) == 13


def test_valid_event() -> None:
    ev = validate_event(EVENT, "c-1")
    assert ev == UsageEvent(
        id=EVENT["id"],
        customer="c-1",
        meter="cpu_seconds",
        value=Decimal("12.5"),
        timestamp_ms=ms("2026-11-05T12:00:00+00:00"),
        attributes=None,
    )
    assert isinstance(ev, UsageEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.value = Decimal(1)  # type: ignore[misc]


def test_fast_construction_builds_the_same_object_as_the_dataclass() -> None:
    ev = validate_event(event(attributes={"a": "b"}))
    assert isinstance(ev, UsageEvent)
    plain = UsageEvent(ev.id, ev.customer, ev.meter, ev.value, ev.timestamp_ms, {"a": "b"})
    assert ev == plain and repr(ev) == repr(plain) and type(ev) is UsageEvent
    assert not hasattr(ev, "__dict__")


def test_key_none_skips_the_key_check() -> None:
    assert isinstance(validate_event(event(customer="other")), UsageEvent)
    assert reason_of(event(customer="other"), "c-1") == "key_mismatch"


@pytest.mark.parametrize("obj", [[EVENT], "x", 1, None, True, 1.5])
def test_not_an_object_is_invalid_shape(obj: object) -> None:
    assert reason_of(obj) == "invalid_shape"


@pytest.mark.parametrize("field", ["id", "customer", "meter", "value", "timestamp"])
def test_missing_field(field: str) -> None:
    assert reason_of(event(**{field: ...})) == "missing_field"


def test_missing_is_reported_before_unknown() -> None:
    assert reason_of(event(value=..., extra=1)) == "missing_field"


@pytest.mark.parametrize("extra", [{"unit": "s"}, {"Value": "1"}, {"attributes": {}, "x": None}])
def test_unknown_field(extra: dict[str, Any]) -> None:
    assert reason_of({**EVENT, **extra}) == "unknown_field"


@pytest.mark.parametrize(
    ("field", "reason"), [("id", "invalid_id"), ("customer", "invalid_customer")]
)
@pytest.mark.parametrize(
    "bad",
    ["", "x" * 129, "a\x00", "a\nb", "\x1f", "del\x7f", "c1\x85", "\x9f", 7, None, True, ["a"]],
)
def test_text_ids(field: str, reason: str, bad: object) -> None:
    assert reason_of(event(**{field: bad})) == reason


@pytest.mark.parametrize(
    "good", ["x", "x" * 128, "événement", "客户 42", "a\u00a0b", "tab-less ~!@#"]
)
def test_text_ids_accept_any_non_control_text(good: str) -> None:
    result = validate_event(event(id=good, customer=good), good)
    assert isinstance(result, UsageEvent)


@pytest.mark.parametrize(
    "bad",
    ["", "CPU", "1cpu", "_x", "cpu seconds", "cpu\n", "m" * 65, "é", 5, None, ["cpu"], {"a": 1}],
)
def test_invalid_meter(bad: object) -> None:
    assert reason_of(event(meter=bad)) == "invalid_meter"


@pytest.mark.parametrize("good", ["m", "m" * 64, "gpu.a100-hours_total", "a0"])
def test_valid_meter(good: str) -> None:
    assert isinstance(validate_event(event(meter=good)), UsageEvent)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", Decimal(0)),
        ("0.0", Decimal(0)),
        ("12.50", Decimal("12.50")),
        ("123456789012345", Decimal(123456789012345)),
        ("12345678901234.5", Decimal("12345678901234.5")),
        ("0.123456789012345", Decimal("0.123456789012345")),
        ("0.000000000000000000000000000000000000000000000000000000000001", Decimal("1E-60")),
        ("1.5" + "0" * 61, Decimal("1.5")),
        (0, Decimal(0)),
        (999_999_999_999_999, Decimal(999_999_999_999_999)),
    ],
)
def test_valid_values(value: object, expected: Decimal) -> None:
    ev = validate_event(event(value=value))
    assert isinstance(ev, UsageEvent)
    assert ev.value == expected and type(ev.value) is Decimal


@pytest.mark.parametrize(
    "value",
    [
        "-1", "-0", "+1", "1e3", "1E3", "1.5e-3", ".5", "5.", "012", "00", "1,5", " 1", "1 ", "",
        "NaN", "nan", "Infinity", "inf", "0x10", "1_000", "\u0661", "\uff11", "1.2.3",
        -1, 1.5, 1.0, 1e3, float("nan"), float("inf"), True, False, None, [], {}, ["1"],
    ],
)  # fmt: skip
def test_invalid_value(value: object) -> None:
    assert reason_of(event(value=value)) == "invalid_value"


@pytest.mark.parametrize(
    "value",
    [
        "1234567890123456", "1000000000000000", "1000000000000000000", "123456789012345.6",
        "0.1234567890123456", "1.00000000000000001", "0." + "0" * 62 + "1",
        "1." + "0" * 63, 1_000_000_000_000_000, 10**30, 10**400,
    ],
)  # fmt: skip
def test_too_many_digits(value: object) -> None:
    assert reason_of(event(value=value)) == "too_many_digits"


def test_value_details_are_helpful_and_short() -> None:
    result = validate_event(event(value="1234567890.1234567"))
    assert isinstance(result, Rejection)
    assert result.detail == "value has 17 significant digits (max 15)"
    result = validate_event(event(value="x" * 10_000))
    assert isinstance(result, Rejection) and len(result.detail) < 150
    result = validate_event(event(value=1.5))
    assert isinstance(result, Rejection) and "decimal string" in result.detail


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-11-05T12:00:00Z", "2026-11-05T12:00:00+00:00"),
        ("2026-11-05t12:00:00z", "2026-11-05T12:00:00+00:00"),
        ("2026-11-05T12:00:00.1Z", "2026-11-05T12:00:00.100+00:00"),
        ("2026-11-05T12:00:00.12Z", "2026-11-05T12:00:00.120+00:00"),
        ("2026-11-05T12:00:00.123999999Z", "2026-11-05T12:00:00.123+00:00"),
        ("2026-11-05T12:00:00+05:30", "2026-11-05T12:00:00+05:30"),
        ("2026-11-05T12:00:00-23:59", "2026-11-05T12:00:00-23:59"),
        ("2026-11-05T12:00:00-00:00", "2026-11-05T12:00:00+00:00"),
        ("2000-01-01T00:00:00+23:59", "2000-01-01T00:00:00+23:59"),
        ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00+00:00"),
        ("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999+00:00"),
        ("9999-12-31T23:59:59.999-23:59", "9999-12-31T23:59:59.999-23:59"),
    ],
)
def test_rfc3339_timestamps(text: str, iso: str) -> None:
    ev = validate_event(event(timestamp=text))
    assert isinstance(ev, UsageEvent)
    assert ev.timestamp_ms == ms(iso)


@pytest.mark.parametrize("value", [0, 1_795_000_000_000, 2**53 - 1])
def test_epoch_ms_timestamps(value: int) -> None:
    ev = validate_event(event(timestamp=value))
    assert isinstance(ev, UsageEvent) and ev.timestamp_ms == value


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-05T12:00:00", "2026-11-05 12:00:00Z", "2026-11-05T12:00Z", "2026-11-05T12:00:00.Z",
        "2026-11-05T12:00:00.1234567890Z", "2026-11-05T12:00:00+0100", "2026-11-05T12:00:00+24:00",
        "2026-11-05T12:00:00+01:60", "2026-11-05T24:00:00Z", "2026-11-05T12:60:00Z",
        "2026-11-05T12:00:60Z", "2026-13-05T12:00:00Z", "2026-00-05T12:00:00Z",
        "2026-11-00T12:00:00Z", "2026-11-31T12:00:00Z", "2026-02-29T12:00:00Z",
        "2100-02-29T12:00:00Z", "1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z", "2026-11-05T12:00:00ZZ", "2026-11-05T12:00:00Z\n",
        " 2026-11-05T12:00:00Z", "2026-11-05", "", "\u0662026-11-05T12:00:00Z",
        -1, 2**53, 1.5, 1795000000000.0, True, None, [], {},
    ],
)  # fmt: skip
def test_invalid_timestamp(value: object) -> None:
    assert reason_of(event(timestamp=value)) == "invalid_timestamp"


def test_every_calendar_day_of_interesting_years() -> None:
    for year in (2000, 2023, 2024, 2100, 2400, 9999):
        for month in range(1, 13):
            for day in range(1, 32):
                text = f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"
                try:
                    expected: int | None = ms(text.replace("Z", "+00:00"))
                except ValueError:
                    expected = None
                result = validate_event(event(timestamp=text))
                got = result.timestamp_ms if isinstance(result, UsageEvent) else None
                assert got == expected, text


@given(
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    st.integers(min_value=0, max_value=9),
    st.booleans(),
)
def test_rfc3339_milliseconds_match_datetime(
    local: datetime, offset_min: int, fraction_digits: int, lower: bool
) -> None:
    sign = "-" if offset_min < 0 else "+"
    offset = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    fraction = f".{local.microsecond:06d}000"[: fraction_digits + 1] if fraction_digits else ""
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset
    if lower:
        text = text.replace("T", "t")
    aware = local.replace(microsecond=0, tzinfo=UTC) - timedelta(minutes=offset_min)
    micros = int((fraction[1:] + "000000")[:6]) if fraction else 0
    expected = (aware - EPOCH) // timedelta(milliseconds=1) + micros // 1000
    result = validate_event(event(timestamp=text))
    assert isinstance(result, UsageEvent), text
    assert result.timestamp_ms == expected


@pytest.mark.parametrize(
    "attributes",
    [
        None, [], "a=b", {"": "x"}, {"a b": "x"}, {"é": "x"}, {"k" * 65: "x"}, {"a\n": "x"},
        {"a": 1}, {"a": None}, {"a": ["x"]}, {"a": "v" * 257},
        {f"k{i}": "v" for i in range(17)}, {1: "x"},
    ],
)  # fmt: skip
def test_invalid_attributes(attributes: object) -> None:
    assert reason_of(event(attributes=attributes)) == "invalid_attributes"


def test_valid_attributes_are_copied() -> None:
    attrs = {f"k.{i}-_X": "v" * 256 for i in range(16)} | {}
    attrs.pop("k.0-_X")
    attrs["k" * 64] = "\x00 any text \n"
    ev = validate_event(event(attributes=attrs))
    assert isinstance(ev, UsageEvent)
    assert ev.attributes == attrs and ev.attributes is not attrs
    empty = validate_event(event(attributes={}))
    assert isinstance(empty, UsageEvent) and empty.attributes == {}


def test_rules_are_checked_in_the_documented_order() -> None:
    everything_wrong = {"id": "", "customer": "", "meter": "X", "value": -1, "timestamp": -1,
                        "attributes": 5}  # fmt: skip
    assert reason_of(everything_wrong, "k") == "invalid_id"
    assert reason_of({**everything_wrong, "id": "e"}, "k") == "invalid_customer"
    assert reason_of({**everything_wrong, "id": "e", "customer": "c"}, "k") == "invalid_meter"
    fixed = {**everything_wrong, "id": "e", "customer": "c", "meter": "m"}
    assert reason_of(fixed, "k") == "invalid_value"
    assert reason_of({**fixed, "value": 1}, "k") == "invalid_timestamp"
    assert reason_of({**fixed, "value": 1, "timestamp": 1}, "k") == "invalid_attributes"
    assert reason_of({**fixed, "value": 1, "timestamp": 1, "attributes": {}}, "k") == "key_mismatch"


def test_details_never_echo_much_of_the_input() -> None:
    long = "A" * 5000
    for obj in (
        event(id=long + "\x00"), event(customer=long), event(meter=long), event(value=long),
        event(timestamp=long), event(attributes={long: "x"}), event(**{long: 1}),
    ):  # fmt: skip
        result = validate_event(obj, "c-1")
        assert isinstance(result, Rejection)
        assert "A" * 61 not in result.detail, result.reason
    result = validate_event(event(customer="c-2"), long)
    assert isinstance(result, Rejection) and "A" * 61 not in result.detail


def test_memos_do_not_leak_between_fields_or_grow_without_bound() -> None:
    # A customer string seen as valid must still be rejected as a meter, and vice versa.
    assert isinstance(validate_event(event(customer="Weird Customer")), UsageEvent)
    assert reason_of(event(meter="Weird Customer")) == "invalid_meter"
    for i in range(10_000):
        validate_event(
            event(value=f"{i}.5", meter=f"m{i}", timestamp=f"2026-11-05T12:00:00.{i:04d}Z")
        )
    for memo in (events._valid_meters, events._decimal_memo, rfc3339._suffix_memo):
        assert len(memo) <= events._MEMO_LIMIT


# --- decode_record ----------------------------------------------------------------------


def test_decode_single_event() -> None:
    raw = orjson.dumps(EVENT)
    evs, rejs = decode_record(raw, "c-1")
    assert rejs == [] and len(evs) == 1 and evs[0] == validate_event(EVENT)


def test_decode_single_bad_event_keeps_the_record_bytes() -> None:
    raw = orjson.dumps(event(value="-1"))
    evs, rejs = decode_record(raw, "c-1")
    assert evs == []
    assert [(r.reason, r.index, r.original) for r in rejs] == [("invalid_value", None, raw)]


def test_decode_packed_record_rejects_bad_elements_one_by_one() -> None:
    elements: list[object] = [
        event(id="e0"), event(id="e1", value="1e3"), event(id="e2"), 5,
        event(id="e4", customer="x"), event(id="e5", value=7, timestamp=1_795_000_000_000),
    ]  # fmt: skip
    evs, rejs = decode_record(orjson.dumps(elements), "c-1")
    assert [e.id for e in evs] == ["e0", "e2", "e5"]
    assert [(r.reason, r.index) for r in rejs] == [
        ("invalid_value", 1), ("invalid_shape", 3), ("key_mismatch", 4),
    ]  # fmt: skip
    assert [orjson.loads(r.original) for r in rejs] == [elements[1], elements[3], elements[4]]


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"{", b"\xff\xfe", b"{\"id\": \"\xc3\x28\"}", b"NaN", b"Infinity", b"[1,]",
     b"\xef\xbb\xbf{}", b"{\"a\":1}garbage"],
)  # fmt: skip
def test_decode_not_json(raw: bytes) -> None:
    evs, rejs = decode_record(raw, "c-1")
    assert evs == [] and len(rejs) == 1
    assert (rejs[0].reason, rejs[0].index, rejs[0].original) == ("invalid_json", None, raw)


def test_decode_null_value() -> None:
    assert decode_record(None, "c-1") == (
        [],
        [Rejection("invalid_json", "record value is null", None, b"")],
    )


@pytest.mark.parametrize("raw", [b"[]", b"5", b'"text"', b"null", b"true", b"1.5"])
def test_decode_wrong_shape(raw: bytes) -> None:
    evs, rejs = decode_record(raw, "c-1")
    assert evs == [] and [(r.reason, r.original) for r in rejs] == [("invalid_shape", raw)]


def test_decode_packed_limits() -> None:
    small = {"id": "e", "customer": "c", "meter": "m", "value": 1, "timestamp": 1}
    evs, rejs = decode_record(orjson.dumps([small] * MAX_PACKED_EVENTS), "c")
    assert len(evs) == MAX_PACKED_EVENTS and rejs == []
    evs, rejs = decode_record(orjson.dumps([small] * (MAX_PACKED_EVENTS + 1)), "c")
    assert evs == [] and [r.reason for r in rejs] == ["invalid_shape"]


def test_decode_too_large_is_not_parsed() -> None:
    raw = b"[" + b" " * MAX_RECORD_BYTES + b"]"
    evs, rejs = decode_record(raw, "c-1")
    assert evs == [] and [r.reason for r in rejs] == ["record_too_large"]
    assert rejs[0].original == raw[:TOO_LARGE_ORIGINAL_BYTES]
    exactly = b"[" + b" " * (MAX_RECORD_BYTES - 2) + b"]"
    assert [r.reason for r in decode_record(exactly, "c-1")[1]] == ["invalid_shape"]


def test_decode_huge_json_integer_is_not_exact() -> None:
    # orjson turns integers beyond 64 bits into floats: rejected, never rounded.
    raw = orjson.dumps(event(value=1)).replace(b'"value":1', b'"value":100000000000000000000000')
    assert [r.reason for r in decode_record(raw, "c-1")[1]] == ["invalid_value"]


@given(st.binary(max_size=300))
def test_decode_never_raises(raw: bytes) -> None:
    evs, rejs = decode_record(raw, "c-1")
    assert len(evs) + len(rejs) >= 1
    assert all(r.reason in REASONS for r in rejs)


# --- encode_event ----------------------------------------------------------------------


def test_encode_event() -> None:
    ev = validate_event(event(value="12.50", timestamp="2026-11-05T12:00:00.5+01:00"))
    assert isinstance(ev, UsageEvent)
    wire = encode_event(ev)
    assert wire == {**EVENT, "value": "12.5", "timestamp": ms("2026-11-05T11:00:00.500+00:00")}
    assert validate_event(wire) == ev
    with_attrs = validate_event(event(attributes={"a": "b"}))
    assert isinstance(with_attrs, UsageEvent)
    assert encode_event(with_attrs)["attributes"] == {"a": "b"}
    assert validate_event(orjson.loads(orjson.dumps(encode_event(with_attrs)))) == with_attrs
