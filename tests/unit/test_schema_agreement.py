"""The JSON Schemas and the fast validator in streams.core.events accept the same events.

Agreement: the schema says valid <=> validate_event returns a UsageEvent. The schema is
evaluated by jsonschema's Draft 2020-12 validator with format checking, and with one type
rule made lexical: "integer" means a JSON integer (Python int), not any number with a zero
fraction. JSON Schema calls 1.0 and 1e3 integers, but the contract rejects them because they
pass through a binary float; test_float_integers_are_the_one_pinned_divergence pins that.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.validators import extend
from referencing import Registry, Resource

from streams.core.events import Rejection, UsageEvent, decode_record, validate_event
from streams.core.money import significant_digits

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
SCHEMAS = {p.name: json.loads(p.read_text()) for p in sorted(SCHEMAS_DIR.glob("*.json"))}
REGISTRY: Registry[Any] = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)
LexicalValidator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, instance: type(instance) is int
    ),
)
EVENT_SCHEMA = LexicalValidator(
    SCHEMAS["usage_event.v1.json"], registry=REGISTRY, format_checker=FormatChecker()
)
STANDARD_EVENT_SCHEMA = Draft202012Validator(
    SCHEMAS["usage_event.v1.json"], registry=REGISTRY, format_checker=FormatChecker()
)
AGREEMENT = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


def agree(obj: object) -> bool:
    """Assert agreement on ``obj``; return whether it is valid."""
    schema_ok = bool(EVENT_SCHEMA.is_valid(obj))
    result = validate_event(obj)
    assert schema_ok == isinstance(result, UsageEvent), (obj, result)
    return schema_ok


# --- strategies: valid fields, and near misses of each rule -----------------------------

valid_text_ids = st.text(
    st.characters(codec="utf-8", exclude_characters="".join(CONTROL)), min_size=1, max_size=128
)
text_ids = st.one_of(
    valid_text_ids,
    st.text(st.characters(codec="utf-8"), max_size=140),
    st.builds(
        lambda a, c, b: a + c + b,
        st.text(max_size=5),
        st.sampled_from(CONTROL),
        st.text(max_size=5),
    ),
    st.sampled_from(["", "x" * 128, "x" * 129, "a\n", "\n", "a\u0085", "a\u00a0", "a\u2028"]),
    st.sampled_from([None, 5, True, ["a"], {"a": "b"}]),
)  # fmt: skip

valid_meters = st.from_regex(r"[a-z][a-z0-9_.-]{0,63}", fullmatch=True)
meters = st.one_of(
    valid_meters,
    st.from_regex(r"[a-zA-Z0-9_.\- \n]{0,66}", fullmatch=True),
    st.sampled_from(["CPU", "m" * 64, "m" * 65, "cpu\n", "\ncpu", "é", "", None, 3]),
)


@st.composite
def decimal_texts(draw: st.DrawFn, *, near_misses: bool = True) -> str:
    """Plain-notation decimals of every length and shape, optionally mangled."""
    whole: str = draw(
        st.one_of(
            st.just("0"),
            st.from_regex(
                r"[1-9][0-9]{0,18}" if near_misses else r"[1-9][0-9]{0,8}", fullmatch=True
            ),
            *([st.from_regex(r"0[0-9]{1,3}", fullmatch=True), st.just("")] if near_misses else []),
        )
    )
    fraction_regex = r"0{0,30}[0-9]{0,18}0{0,30}" if near_misses else r"0{0,25}[0-9]{0,6}0{0,25}"
    fraction: str | None = draw(st.one_of(st.none(), st.from_regex(fraction_regex, fullmatch=True)))
    if fraction == "" and not near_misses:
        fraction = None
    text = whole + ("" if fraction is None else "." + fraction)
    if near_misses:
        prefix: str = draw(st.sampled_from(["", "", "", "", "-", "+", " ", "\u0660"]))
        suffix: str = draw(st.sampled_from(["", "", "", "", "e3", "E-2", "\n", " ", "x", "\u0661"]))
        text = prefix + text + suffix
    return text


valid_values = st.one_of(
    decimal_texts(near_misses=False).filter(
        lambda text: len(text) <= 64 and significant_digits(Decimal(text)) <= 15
    ),
    st.integers(min_value=0, max_value=999_999_999_999_999),
)
values = st.one_of(
    decimal_texts(),
    st.integers(min_value=-(10**3), max_value=10**17),
    st.integers(min_value=10**15 - 3, max_value=10**15 + 3),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.sampled_from(["NaN", "Infinity", "-0", "0.0", "1e3", True, False, None, [], {}, ["1"]]),
)


@st.composite
def rfc3339_texts(draw: st.DrawFn, *, near_misses: bool = True) -> str:
    """RFC 3339 date-times; with near misses, fields step just outside their ranges."""
    out_of_range = near_misses and draw(st.integers(0, 3)) == 0

    def field(low: int, high: int, width: int) -> str:
        value = draw(st.integers(low - out_of_range, high + out_of_range))
        return f"{value:0{width}d}"

    year = draw(
        st.one_of(
            st.sampled_from([2000, 2023, 2024, 2100, 2400, 9999]),
            st.integers(2000 - 2 * out_of_range, 9999 + out_of_range),
        )
    )
    month = field(1, 12, 2)
    day = field(1, 28, 2) if not near_misses else f"{draw(st.integers(0, 32)):02d}"
    hour, minute, second = field(0, 23, 2), field(0, 59, 2), field(0, 59, 2)
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True)))
    sign = draw(st.sampled_from("+-"))
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.builds(
                lambda h, m: f"{sign}{h}:{m}", st.just(field(0, 23, 2)), st.just(field(0, 59, 2))
            ),
        )
    )
    separator = draw(st.sampled_from("Tt"))
    if near_misses and draw(st.integers(0, 4)) == 0:
        fraction = draw(st.sampled_from(["", ".", ".1234567890", ".x"]))
        offset = draw(st.sampled_from(["", "+0100", "+1:00", "Z\n", "UTC", "+01:00:00"]))
        separator = draw(st.sampled_from(["T", " ", "_"]))
    return f"{year:04d}-{month}-{day}{separator}{hour}:{minute}:{second}{fraction}{offset}"


valid_timestamps = st.one_of(
    rfc3339_texts(near_misses=False), st.integers(min_value=0, max_value=2**53 - 1)
)
timestamps: st.SearchStrategy[object] = st.one_of(
    rfc3339_texts(),
    st.integers(min_value=-5, max_value=5),
    st.integers(min_value=2**53 - 3, max_value=2**53 + 3),
    st.floats(allow_nan=False),
    st.sampled_from(["", "2026-11-05", "1970-01-01T00:00:00Z", True, None, [], {}]),
)

valid_attribute_maps = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), st.text(max_size=256), max_size=16
)
attribute_maps: st.SearchStrategy[object] = st.one_of(
    valid_attribute_maps,
    st.dictionaries(
        st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), st.text(max_size=66)),
        st.one_of(st.text(max_size=258), st.integers(), st.none(), st.lists(st.text(), max_size=1)),
        max_size=18,
    ),
    st.sampled_from([None, [], "a=b", 1]),
)

REQUIRED = ("id", "customer", "meter", "value", "timestamp")


@st.composite
def events(draw: st.DrawFn, *, valid: bool) -> dict[str, object]:
    """Valid events; or events where each field is a near miss with probability 1/3."""

    def pick(good: st.SearchStrategy[Any], near_miss: st.SearchStrategy[Any]) -> Any:
        return draw(near_miss if not valid and draw(st.integers(0, 2)) == 0 else good)

    event: dict[str, object] = {
        "id": pick(valid_text_ids, text_ids),
        "customer": pick(valid_text_ids, text_ids),
        "meter": pick(valid_meters, meters),
        "value": pick(valid_values, values),
        "timestamp": pick(valid_timestamps, timestamps),
    }
    if draw(st.booleans()):
        event["attributes"] = pick(valid_attribute_maps, attribute_maps)
    if not valid:
        if draw(st.integers(0, 9)) == 0:
            del event[draw(st.sampled_from(REQUIRED))]
        if draw(st.integers(0, 9)) == 0:
            event[draw(st.sampled_from(["unit", "Id", "", "attributes ", "schema"]))] = 1
    return event


# --- properties ---------------------------------------------------------------------------


@AGREEMENT
@given(events(valid=True))
def test_generated_valid_events_pass_both(event: dict[str, object]) -> None:
    assert agree(event)


@AGREEMENT
@given(events(valid=False))
def test_generated_near_miss_events_agree(event: dict[str, object]) -> None:
    agree(event)


@AGREEMENT
@given(st.one_of(values, decimal_texts(), st.from_regex(r"[0-9.]{1,70}", fullmatch=True)))
def test_value_rule_agrees(value: object) -> None:
    base = {"id": "e", "customer": "c", "meter": "m", "timestamp": 0}
    agree({**base, "value": value})


@AGREEMENT
@given(st.one_of(timestamps, rfc3339_texts()))
def test_timestamp_rule_agrees(timestamp: object) -> None:
    agree({"id": "e", "customer": "c", "meter": "m", "value": 1, "timestamp": timestamp})


@AGREEMENT
@given(st.one_of(text_ids, meters))
def test_text_rules_agree(text: object) -> None:
    base = {"id": "e", "customer": "c", "meter": "m", "value": 1, "timestamp": 0}
    agree({**base, "id": text})
    agree({**base, "customer": text})
    agree({**base, "meter": text})


@AGREEMENT
@given(attribute_maps)
def test_attribute_rule_agrees(attributes: object) -> None:
    agree(
        {
            "id": "e",
            "customer": "c",
            "meter": "m",
            "value": 1,
            "timestamp": 0,
            "attributes": attributes,
        }
    )


@AGREEMENT
@given(events(valid=True))
def test_wire_round_trip_is_valid_for_both(event: dict[str, object]) -> None:
    decoded = orjson.loads(orjson.dumps(event))
    assert agree(decoded)
    evs, rejs = decode_record(orjson.dumps([event, event]), None)
    assert rejs == [] and len(evs) == 2


def test_every_calendar_day_agrees() -> None:
    for year in (2000, 2001, 2024, 2100, 2200, 2400, 9996, 9999):
        for month in range(0, 14):
            for day in range(0, 33):
                agree({"id": "e", "customer": "c", "meter": "m", "value": 1,
                       "timestamp": f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"})  # fmt: skip


@pytest.mark.parametrize(
    ("field", "number"), [("value", 1.0), ("value", 1e3), ("timestamp", 1795000000000.0)]
)
def test_float_integers_are_the_one_pinned_divergence(field: str, number: float) -> None:
    event = {"id": "e", "customer": "c", "meter": "m", "value": 1, "timestamp": 0, field: number}
    assert STANDARD_EVENT_SCHEMA.is_valid(event)  # JSON Schema: 1.0 is an integer
    assert not EVENT_SCHEMA.is_valid(event)
    result = validate_event(event)
    assert isinstance(result, Rejection)
    assert result.reason == ("invalid_value" if field == "value" else "invalid_timestamp")


# --- examples -----------------------------------------------------------------------------

EXAMPLES = sorted((SCHEMAS_DIR / "examples").glob("*/*/*.json"))


def test_every_schema_has_valid_and_invalid_examples() -> None:
    for name in SCHEMAS:
        stem = name.removesuffix(".v1.json")
        for kind in ("valid", "invalid"):
            assert list((SCHEMAS_DIR / "examples" / stem / kind).glob("*.json")), (stem, kind)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: "/".join(p.parts[-3:]))
def test_example_matches_its_folder(path: Path) -> None:
    schema_name, kind = path.parts[-3] + ".v1.json", path.parts[-2]
    expected_valid = kind == "valid"
    raw = path.read_bytes()
    instance = json.loads(raw)
    for validator_class in (Draft202012Validator, LexicalValidator):
        validator = validator_class(
            SCHEMAS[schema_name], registry=REGISTRY, format_checker=FormatChecker()
        )
        assert validator.is_valid(instance) == expected_valid
    if schema_name == "usage_event.v1.json":
        result = validate_event(orjson.loads(raw))
        assert isinstance(result, UsageEvent) == expected_valid
        if not expected_valid:
            assert isinstance(result, Rejection)
            assert result.reason == path.stem.split("--")[0]
    elif schema_name == "usage_record.v1.json":
        evs, rejs = decode_record(raw, None)
        assert (not rejs) == expected_valid
        assert bool(evs) or not expected_valid


def test_usage_event_examples_cover_every_expressible_reason() -> None:
    reasons = {
        p.stem.split("--")[0] for p in (SCHEMAS_DIR / "examples/usage_event/invalid").glob("*")
    }
    # invalid_json, record_too_large and key_mismatch are about the record, not the object.
    assert reasons == {
        "invalid_shape", "missing_field", "unknown_field", "invalid_id", "invalid_customer",
        "invalid_meter", "invalid_value", "too_many_digits", "invalid_timestamp",
        "invalid_attributes",
    }  # fmt: skip


def test_schemas_are_valid_draft_2020_12() -> None:
    for name, schema in SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"https://meterstream.dev/schemas/{name}"
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
