"""A batch sums values at the narrow scale when it can, else at the wide one, and either way
produces the same result.

The aggregator tries each batch with values in units of 10**-NARROW_SCALE, and takes a
batch again at VALUE_SCALE (every valid value fits) when it meets a value or a stored total
with more decimal places (streams.core.aggregate). These properties run the same input
through an aggregator that tries narrow first and one that is always wide, each on its own
state, and require the same result from every batch: the same writes in the same order, the
same summaries, alerts, dead letters and outcomes. The always-wide aggregator is the one the
crash and recount properties proved before the narrow scale existed (they run on narrow
values now: tests/unit/test_aggregate_properties.py).
"""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, BatchResult, SourceRecord
from streams.core.money import NARROW_SCALE, VALUE_SCALE, format_decimal
from streams.testing.memory_state import MemoryState
from tests.unit.test_aggregate_properties import CONFIG, T0, WINDOW_MS, workloads

# Values with more places than the narrow scale holds (and at most 15 significant digits).
precise_values = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(1, 10**12), st.integers(NARROW_SCALE + 1, VALUE_SCALE),
).map(format_decimal).filter(lambda text: len(text.partition(".")[2]) > NARROW_SCALE)


def _wide() -> Aggregator:
    agg = Aggregator(CONFIG)
    agg.narrow_scale = VALUE_SCALE
    return agg


def _with_precise_values(records: list[SourceRecord], data: st.DataObject) -> list[SourceRecord]:
    """``records`` with the value of some events replaced by one with more places than the
    narrow scale holds."""
    out = []
    for rec in records:
        value = rec.value
        if value is not None and rec.key is not None and data.draw(st.integers(0, 9)) == 0:
            try:
                body = orjson.loads(value)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict) and "value" in body:
                body["value"] = data.draw(precise_values)
                value = orjson.dumps(body)
        out.append(SourceRecord(rec.offset, rec.timestamp_ms, rec.key, value, rec.tick_ms))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.data())
def test_narrow_first_equals_always_wide(workload: tuple[list[SourceRecord], object],
                                         data: st.DataObject) -> None:
    records = _with_precise_values(workload[0], data)
    wide, narrow = _wide(), Aggregator(CONFIG)
    wide_state, narrow_state = MemoryState(), MemoryState()
    i, crashes = 0, 0
    now = T0 + 20 * WINDOW_MS
    while i < len(records):
        n = data.draw(st.integers(1, 8))
        batch = records[i:i + n]
        if data.draw(st.booleans()):
            narrow = Aggregator(CONFIG)  # a restart: no memo of a wide partition
        got: BatchResult = narrow.process(0, batch, narrow_state, now_ms=now)
        want: BatchResult = wide.process(0, batch, wide_state, now_ms=now)
        assert got == want
        if crashes < 3 and data.draw(st.booleans()):
            # A crash after a prefix of the writes, then a replay from an earlier offset
            # (the same on both sides).
            keep = data.draw(st.integers(0, len(got.writes)))
            narrow_state.apply(got.writes[:keep])
            wide_state.apply(want.writes[:keep])
            i = data.draw(st.integers(0, i)) if i else 0
            crashes += 1
            continue
        narrow_state.apply(got.writes)
        wide_state.apply(want.writes)
        i += n
    assert narrow_state.data == wide_state.data


def test_a_precise_value_takes_its_batch_wide_and_its_total_stays_exact() -> None:
    """One value with 12 places among narrow ones: the summary carries every place."""
    agg = Aggregator(CONFIG)
    state = MemoryState()
    body = {"customer": "acme", "meter": "cpu", "timestamp": T0}
    values = ["1.5", "0.000000000001", "2"]
    records = [SourceRecord(i, T0 + 1000, "acme", orjson.dumps({**body, "id": f"e{i}",
                                                                 "value": v}))
               for i, v in enumerate(values)]
    records.append(SourceRecord(3, T0 + 10**9, None, None, tick_ms=T0 + 10**8))
    res = agg.process(0, records[:1], state, now_ms=T0)  # narrow
    state.apply(res.writes)
    for rec in records[1:]:
        res = agg.process(0, [rec], state, now_ms=T0)
        state.apply(res.writes)
    [summary] = res.summaries
    assert summary["total"] == "3.500000000001"
    # A new aggregator (a restart) meets the precise total in the state: wide again, same.
    # A late event for the closed window corrects it.
    rec = SourceRecord(4, T0 + 10**9, "acme", orjson.dumps({**body, "id": "e4", "value": "1"}))
    later = SourceRecord(5, T0 + 10**9, None, None, tick_ms=T0 + 10**8 + 2 * WINDOW_MS)
    res = Aggregator(CONFIG).process(0, [rec, later], state, now_ms=T0)
    assert res == _wide().process(0, [rec, later], state, now_ms=T0)
    [correction] = res.summaries
    assert (correction["seq"], correction["total"]) == (1, "4.500000000001")
