"""The aggregator's decoder (streams.core.scan) agrees with decode_record on any input.

scan_record skips UsageEvent and Decimal on its fast path; these properties prove that it
accepts and rejects exactly what decode_record does, with the same values (in units),
whatever state the validation memos are in.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.core.events import decode_record
from streams.core.money import VALUE_SCALE, to_units
from streams.core.scan import scan_record
from tests.unit.test_schema_agreement import events

SCAN = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_agree(value: bytes | None, key: str) -> None:
    want_events, want_rejections = decode_record(value, key)
    for _ in range(2):  # cold, then with the memos warm from the first pass
        got_events, got_rejections = scan_record(value, key)
        assert list(got_rejections) == want_rejections
        assert [(e[0], e[1], e[2], e[3], e[4]) for e in got_events] == [
            (i, ev.id, ev.meter, to_units(ev.value, VALUE_SCALE), ev.timestamp_ms)
            for i, ev in zip(_indexes(value, len(want_events), want_rejections),
                             want_events, strict=True)
        ]


def dumps(obj: object) -> bytes:
    """JSON bytes of ``obj``; the example is dropped if JSON cannot hold it (huge ints)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        assume(False)
        raise


def _indexes(value: bytes | None, n: int, rejections: list[Any]) -> list[int]:
    """Positions of decode_record's events in their record (0 for a single event)."""
    if n == 0:
        return []
    assert value is not None
    if value.lstrip()[:1] != b"[":
        return [0]
    bad = {r.index for r in rejections}
    return [i for i in range(n + len(bad)) if i not in bad]


@SCAN
@given(st.data(), st.booleans())
def test_single_records_agree(data: st.DataObject, valid: bool) -> None:
    event = data.draw(events(valid=valid))
    key = event["customer"] if type(event.get("customer")) is str and data.draw(
        st.booleans()) else data.draw(st.sampled_from(["", "acme", "c-1"]))
    assert isinstance(key, str)
    assert_agree(dumps(event), key)


@SCAN
@given(st.data())
def test_packed_records_agree(data: st.DataObject) -> None:
    customer = data.draw(st.sampled_from(["acme", "c-1", "düsseldorf"]))
    evs = []
    for _ in range(data.draw(st.integers(1, 6))):
        event = data.draw(events(valid=data.draw(st.booleans())))
        if data.draw(st.integers(0, 3)):
            event["customer"] = customer
        evs.append(event)
    if data.draw(st.integers(0, 5)) == 0:
        evs.insert(0, data.draw(st.sampled_from([1, "x", None, [], [{"id": "a"}]])))
    assert_agree(dumps(evs), customer)


@SCAN
@given(st.sampled_from([None, b"", b"{", b"[]", b"3", b"\xff", b'"a"', b"[" * 300 + b"]" * 300,
                        b" {}", b'[{"id":1}]']))
def test_broken_records_agree(value: bytes | None) -> None:
    assert_agree(value, "acme")


# JSON text where msgspec's reading could differ from orjson's: the fast path (msgspec)
# must give what the exact path (orjson) gives. Each is tried with warm memos, so that the
# fast path is taken whenever msgspec accepts the text.
_VALID = (b'{"id":"e-1","customer":"acme","meter":"cpu_seconds","value":"1.5",'
          b'"timestamp":1700000000000}')
_JSON_EDGES = [
    _VALID,
    _VALID.replace(b'"id":"e-1"', b'"id":"x","id":"e-1"'),  # duplicate key: last wins
    _VALID.replace(b'"id":"e-1"', b'"id":"e-1","id":5'),
    _VALID.replace(b'"e-1"', b'"\\ud800"'),  # lone surrogate escape
    _VALID.replace(b'"e-1"', b'"\\u0065-1"'),  # escaped ASCII
    _VALID.replace(b'"e-1"', b'"\xff"'),  # invalid UTF-8
    _VALID.replace(b'"e-1"', b'"e\x01"'),  # raw control character
    _VALID.replace(b"1700000000000", b"99999999999999999999999"),
    _VALID.replace(b"1700000000000", b"-0"),
    _VALID.replace(b"1700000000000", b"1.7e12"),
    _VALID.replace(b"1700000000000", b"01700000000000"),
    _VALID.replace(b"1700000000000", b"NaN"),
    _VALID.replace(b"1700000000000", b"true"),
    _VALID.replace(b'"1.5"', b"18446744073709551616"),
    _VALID.replace(b'"1.5"', b"-1"),
    _VALID.replace(b'"1.5"', b'"01.5"'),
    _VALID.replace(b'"1.5"', b'"1."'),
    _VALID.replace(b'"acme"', b'"ac\\u006de"'),
    _VALID.replace(b'"cpu_seconds"', b'"cpu_second\\u0073"'),
    _VALID.replace(b'"timestamp"', b'"timestamp","attributes":{}'),
    _VALID[:-1] + b',}',
    _VALID + b"x",
    b" \n" + _VALID + b"\t",
    b"\xef\xbb\xbf" + _VALID,
    b"[" + _VALID + b"," + _VALID.replace(b"e-1", b"e-2") + b"]",
    b"[" + _VALID + b",]",
    b"[" + _VALID + b"," + _VALID.replace(b'"acme"', b'"other"') + b"]",
    b"[" + _VALID + b"," + _VALID.replace(b'"1.5"', b"1.5") + b"]",
    b"[" + _VALID + b",3]",
    b"[[" + _VALID + b"]]",
]
# Strings that only the per-string checks refuse, alone and as the second event of a
# packed record (whose events skip those checks when its bytes are plain: scan._plain).
_STRING_EDGES = [
    _VALID.replace(b'"e-1"', b'"e\x7f"'),  # raw DEL: valid JSON, not printable
    _VALID.replace(b'"e-1"', b'"e\\u007f"'),  # escaped DEL
    _VALID.replace(b'"e-1"', b'"e\\t"'),  # escaped control character
    _VALID.replace(b'"e-1"', b'"\xc3\xa9"'),  # non-ASCII id
    _VALID.replace(b'"1.5"', b'"1\x7f5"'),  # DEL in a value
    _VALID.replace(b'"1.5"', b'"\\u0031.5"'),  # escaped digit in a value
    _VALID.replace(b'"1.5"', b'"\xd9\xa1.5"'),  # a non-ASCII digit (Arabic-Indic one)
]
_JSON_EDGES += _STRING_EDGES
_JSON_EDGES += [b"[" + _VALID.replace(b"e-1", b"e-0") + b"," + v + b"]" for v in _STRING_EDGES]


@pytest.mark.parametrize("value", _JSON_EDGES)
def test_each_json_edge_case_agrees(value: bytes) -> None:
    scan_record(_VALID, "acme")  # warm the memos: the fast path is open
    assert_agree(value, "acme")


@SCAN
@given(st.sampled_from(_JSON_EDGES), st.data())
def test_json_edge_cases_agree(value: bytes, data: st.DataObject) -> None:
    scan_record(_VALID, "acme")  # warm the memos: the fast path is open
    # and some byte-level damage on top
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        value = value[:i] + data.draw(st.binary(min_size=0, max_size=2)) + value[i + 1:]
    assert_agree(value, "acme")


def test_the_fast_path_is_taken_for_clean_records() -> None:
    """A clean record with warm memos decodes without keeping the JSON object (the fast
    path's mark), single and packed."""
    scan_record(_VALID, "acme")
    events, rejections = scan_record(_VALID, "acme")
    assert not rejections and [e[5] for e in events] == [None]
    packed = b"[" + _VALID + b"," + _VALID.replace(b"e-1", b"e-2") + b"]"
    events, rejections = scan_record(packed, "acme")
    assert not rejections and [(e[0], e[1], e[5]) for e in events] == [
        (0, "e-1", None), (1, "e-2", None)]
