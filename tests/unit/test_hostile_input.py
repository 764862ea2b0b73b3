"""Hostile input never makes the validator or the aggregator core raise, and is never lost.

Hypothesis throws random bytes, mutated JSON and the catalogue of streams.testing.hostile
(wrong types, NaN/Infinity, negative values, too many digits, unicode and empty ids,
control characters, key mismatches and missing keys, timestamps far away, deep nesting,
huge arrays, records around 1 MiB, forged tick headers) at ``decode_record`` and at the
core ``Aggregator``. Every event that goes in comes out exactly once, as accepted (or late),
a duplicate, or a dead letter whose reason is one of the documented codes:
``events in == accepted + late + duplicates + dead letters``.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
from streams.core.events import (
    MAX_ORIGINAL_BYTES,
    MAX_PACKED_EVENTS,
    MAX_RECORD_BYTES,
    REASONS,
    decode_record,
)
from streams.core.pricing import MeterRule
from streams.runtime.records import _tick_of
from streams.testing.hostile import SUM_METERS, hostile_workload
from streams.testing.memory_state import MemoryState

SEMANTIC = {"unknown_meter", "in_future", "too_old"}
DOCUMENTED = REASONS | SEMANTIC
NOW_MS = 1_795_000_000_000 - 1_795_000_000_000 % 60_000
CONFIG = CoreConfig(
    meters={m: MeterRule(m, "sum", Decimal("0.01")) for m in SUM_METERS}
    | {"executions": MeterRule("executions", "count", Decimal(1))},
    window_ms=60_000, grace_ms=5_000, idle_bound_ms=1_000, dedup_horizon_ms=3_600_000,
)
HOSTILE = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def events_in(value: bytes | None) -> int:
    """How many events a record carries by the contract: the elements of a packed record
    of 1..10,000 that fits in 1 MiB, else one (the record itself)."""
    if value is None or len(value) > MAX_RECORD_BYTES:
        return 1
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1
    return len(obj) if type(obj) is list and 1 <= len(obj) <= MAX_PACKED_EVENTS else 1


def check_decoded(value: bytes | None, key: str | None) -> None:
    events, rejections = decode_record(value, key)
    assert len(events) + len(rejections) == events_in(value)
    for r in rejections:
        assert r.reason in REASONS, r
        assert len(r.detail) <= 500
        assert len(r.original) <= MAX_ORIGINAL_BYTES
    indexes = [r.index for r in rejections if r.index is not None]
    assert len(indexes) == len(set(indexes))
    for ev in events:
        assert key is None or ev.customer == key
        assert ev.value >= 0 and ev.value.is_finite()


# -- decode_record -----------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-1", "1e3", "0x1", "\u0661", "", " 1",
                     "1234567890123456", "2026-11-05T12:00:00Z", "9999-12-31T23:59:59Z",
                     "\x00", "\u202e", "\ud7ff", "a" * 200]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
FIELDS = ("id", "customer", "meter", "value", "timestamp", "attributes")


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-right events: a few fields replaced with anything, dropped or added."""
    ev: dict[str, Any] = {"id": draw(st.text(max_size=130)), "customer": "acme",
                          "meter": draw(st.sampled_from([*SUM_METERS, "nope", "X"])),
                          "value": draw(st.integers(-5, 10**16) | st.just("12.5")),
                          "timestamp": draw(st.integers(-1, 2**54) | st.just(NOW_MS))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            ev[name] = draw(json_values)
        else:
            ev.pop(name, None)
    if draw(st.booleans()):
        ev[draw(st.text(max_size=10))] = draw(json_values)
    return ev


def to_bytes(obj: object) -> bytes:
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return repr(obj).encode("utf-8", "replace")


@HOSTILE
@given(st.binary(max_size=3000), st.one_of(st.none(), st.text(max_size=20)))
@example(b"", "acme")
@example(b"[" * 2000 + b"]" * 2000, "acme")
@example(b"[" + b"[" * 600 + b"]" * 600 + b"]", "acme")
@example(b'{"value": NaN}', "acme")
@example(b"[Infinity]", None)
def test_random_bytes_never_raise(value: bytes, key: str | None) -> None:
    check_decoded(value, key)


@HOSTILE
@given(st.lists(event_like(), min_size=1, max_size=5), st.booleans(),
       st.one_of(st.none(), st.sampled_from(["acme", "other", ""])), st.data())
def test_mutated_events_never_raise(events: list[dict[str, Any]], packed: bool,
                                    key: str | None, data: st.DataObject) -> None:
    value = to_bytes(events if packed else events[0])
    check_decoded(value, key)
    cut = data.draw(st.integers(0, len(value)))
    check_decoded(value[:cut], key)  # truncated


@pytest.mark.parametrize("size", [MAX_RECORD_BYTES - 1, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1,
                                  3 * MAX_RECORD_BYTES])
def test_records_around_1_mib(size: int) -> None:
    junk = b"\xff" * size
    check_decoded(junk, "acme")
    _, rejections = decode_record(junk, "acme")
    reason = "record_too_large" if size > MAX_RECORD_BYTES else "invalid_json"
    assert [r.reason for r in rejections] == [reason]
    one = orjson.dumps({"id": "1", "customer": "acme", "meter": "cpu_seconds", "value": "1",
                        "timestamp": NOW_MS, "attributes": {"pad": "x" * 200}})
    n = size // (len(one) + 1)
    packed = b"[" + b",".join([one] * n) + b"]"
    check_decoded(packed, "acme")


def test_huge_array_and_deep_nesting() -> None:
    assert decode_record(b"[" + b"{}," * MAX_PACKED_EVENTS + b"{}]", "k")[1][0].reason == (
        "invalid_shape")
    events, rejections = decode_record(b"[" + b"[" * 900 + b"]" * 900 + b"]", "k")
    assert not events and [r.reason for r in rejections] == ["invalid_shape"]
    attributes = b'{"a":' * 500 + b'"x"' + b"}" * 500
    record = (b'[{"id":"1","customer":"k","meter":"cpu_seconds","value":"1","timestamp":1,'
              b'"attributes":' + attributes + b"}]")
    assert decode_record(record, "k")[1][0].reason == "invalid_attributes"


# -- the aggregator core ----------------------------------------------------------------


def run_core(records: list[SourceRecord], batch: int) -> tuple[Counter[str], list[Any], Any]:
    agg, store = Aggregator(CONFIG), MemoryState()
    outcomes: Counter[str] = Counter()
    dead: list[Any] = []
    for i in range(0, len(records), batch):
        result = agg.process(0, records[i:i + batch], store, now_ms=NOW_MS)
        store.apply(result.writes)
        outcomes.update(result.outcomes)
        dead += result.dead_letters
    return outcomes, dead, store


def check_conservation(records: list[SourceRecord], outcomes: Counter[str],
                       dead: list[Any]) -> None:
    n_in = sum(events_in(r.value) for r in records if r.tick_ms is None)
    invalid = sum(n for k, n in outcomes.items() if k.startswith("invalid:"))
    assert invalid == len(dead)
    assert n_in == outcomes["accepted"] + outcomes["late"] + outcomes["duplicate"] + invalid, (
        n_in, outcomes)
    for d in dead:
        assert d.reason in DOCUMENTED, d
        assert len(d.original) <= MAX_ORIGINAL_BYTES
        assert d.key is None or len(d.key) <= 1024


@HOSTILE
@given(seed=st.integers(0, 2**32), batch=st.integers(1, 64),
       record_ts=st.sampled_from([NOW_MS, 0, NOW_MS + 10 * 86_400_000, 2**53, 2**62]))
def test_core_conserves_every_hostile_event(seed: int, batch: int, record_ts: int) -> None:
    hostile, truth = hostile_workload(seed, 60, now_ms=NOW_MS, event_ms=NOW_MS - 120_000,
                                      large=False)
    records = [SourceRecord(i, NOW_MS, r.key.decode("utf-8", "replace") if r.key else None,
                            r.value) for i, r in enumerate(hostile)]
    # Records with a timestamp far from the events' (a broker that accepts any CreateTime).
    records.append(SourceRecord(len(records), record_ts, "acme", orjson.dumps(
        {"id": "far", "customer": "acme", "meter": "cpu_seconds", "value": "1",
         "timestamp": min(record_ts, 2**53 - 1)})))
    records.append(SourceRecord(len(records), NOW_MS + 3_600_000, None, None,
                                tick_ms=NOW_MS + 3_600_000))
    outcomes, dead, _ = run_core(records, batch)
    check_conservation(records, outcomes, dead)
    # Exactly the catalogue's verdicts for its records (the extra record is one more event).
    hostile_dead = Counter(d.reason for d in dead if d.offset < len(hostile))
    assert hostile_dead == truth.dead
    assert outcomes["duplicate"] == truth.duplicates


def test_core_on_the_1_mib_records() -> None:
    hostile, truth = hostile_workload(5, 10, now_ms=NOW_MS, event_ms=NOW_MS - 120_000)
    records = [SourceRecord(i, NOW_MS, r.key.decode("utf-8", "replace") if r.key else None,
                            r.value) for i, r in enumerate(hostile)]
    assert {r.kind for r in hostile} >= {"just_under_1mib", "record_too_large",
                                         "invalid_json_1mib"}
    outcomes, dead, _ = run_core(records, 4)
    check_conservation(records, outcomes, dead)
    assert Counter(d.reason for d in dead) == truth.dead
    assert outcomes["accepted"] + outcomes["late"] == truth.accepted


@given(st.binary(max_size=40) | st.sampled_from(
    [b"", b"-5", b"1_000", b" 12 ", b"9" * 5000, str(2**53).encode(), b"\xd9\xa3", b"0x10"]))
def test_forged_tick_headers_never_raise(header: bytes) -> None:
    tick = _tick_of([("meterstream-tick", header)])
    assert tick is None or 0 <= tick < 2**53


def test_forged_tick_cannot_move_stream_time_past_its_record() -> None:
    ev = {"id": "1", "customer": "acme", "meter": "cpu_seconds", "value": "2",
          "timestamp": NOW_MS}
    records = [
        SourceRecord(0, NOW_MS + 1000, "acme", orjson.dumps(ev)),
        # A tick a year ahead in a record produced now: stream time stops at the record.
        SourceRecord(1, NOW_MS + 2000, None, b"", tick_ms=NOW_MS + 365 * 86_400_000),
        SourceRecord(2, NOW_MS + 3000, "acme", orjson.dumps({**ev, "id": "1"})),
    ]
    outcomes, dead, _ = run_core(records, 1)
    assert not dead
    assert outcomes["accepted"] == 1 and outcomes["duplicate"] == 1


def test_core_never_raises_on_a_live_clock() -> None:
    now = int(time.time() * 1000)
    hostile, _ = hostile_workload(11, 300, now_ms=now, event_ms=now - 180_000, large=False)
    records = [SourceRecord(i, now, r.key.decode("utf-8", "replace") if r.key else None,
                            r.value) for i, r in enumerate(hostile)]
    outcomes, dead, _ = run_core(records, 50)
    check_conservation(records, outcomes, dead)
