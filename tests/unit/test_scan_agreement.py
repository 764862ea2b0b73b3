"""The aggregator's decoder (streams.core.scan) agrees with decode_record on any input.

scan_record skips UsageEvent and Decimal on its fast path; these properties prove that it
accepts and rejects exactly what decode_record does, with the same values (in units),
whatever state the validation memos are in.
"""

from __future__ import annotations

from typing import Any

import orjson
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
