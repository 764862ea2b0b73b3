"""The intake rule for window totals (streams.core.billable): what the worker accepts, the
sink can deliver."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.billable import REASON, unbillable_total
from streams.core.money import EXACT


def test_delta_meters_never_refuse() -> None:
    huge = Decimal("120999999999999879.00000000000012")
    assert unbillable_total(huge, pre_aggregated=False) is None


def test_pre_aggregated_refuses_a_total_past_fifteen_digits() -> None:
    assert unbillable_total(Decimal("999999999999999"), pre_aggregated=True) is None
    assert unbillable_total(Decimal("0.100000000000001"), pre_aggregated=True) is None
    detail = unbillable_total(Decimal("1000000000000000"), pre_aggregated=True)
    assert detail is not None and "16 significant digits" in detail
    assert unbillable_total(Decimal("0.1000000000000001"), pre_aggregated=True) is not None
    assert REASON == "unbillable_total"


@given(st.lists(st.integers(min_value=0, max_value=10**15 - 1), min_size=1, max_size=50))
@settings(max_examples=200, deadline=None)
def test_a_pre_aggregated_total_kept_by_the_rule_is_always_sendable(values: list[int]) -> None:
    """Applying the rule event by event keeps every window total sendable as one event."""
    from streams.sink.plan import MAX_DIGITS, split_value

    total = Decimal(0)
    for v in values:
        after = EXACT.add(total, Decimal(v))
        if unbillable_total(after, pre_aggregated=True) is None:
            total = after
    if total:
        assert split_value(total, MAX_DIGITS) == [total]


def test_the_core_refuses_at_intake_the_event_a_pre_aggregated_window_cannot_carry() -> None:
    """The issue's case on a pre-aggregated meter: the event that would take the window
    total past 15 significant digits goes to the DLQ; the window keeps a sendable total."""
    import orjson

    from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
    from streams.core.pricing import MeterRule
    from streams.testing.memory_state import MemoryState

    t0 = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000
    config = CoreConfig(meters={"gpu": MeterRule("gpu", "sum", Decimal("1"),
                                                 pre_aggregated=True)},
                        window_ms=3_600_000, grace_ms=0)
    values = ["999999999999999", "0.000000000000001"]
    records = []
    for i, value in enumerate(values):
        body = {"id": f"e{i}", "customer": "acme", "meter": "gpu", "value": value,
                "timestamp": t0 + i}
        records.append(SourceRecord(i, t0 + 1000, "acme", orjson.dumps(body)))
    records.append(SourceRecord(2, t0 + 7_300_000, None, None, tick_ms=t0 + 7_300_000))
    state = MemoryState()
    result = Aggregator(config).process(0, records, state, now_ms=t0)
    assert [d.reason for d in result.dead_letters] == [REASON]
    assert result.dead_letters[0].offset == 1
    [summary] = result.summaries
    assert Decimal(summary["total"]) == Decimal("999999999999999")
    # On a meter that receives deltas the same events are both billed (the sink splits).
    config = CoreConfig(meters={"gpu": MeterRule("gpu", "sum", Decimal("1"))},
                        window_ms=3_600_000, grace_ms=0)
    result = Aggregator(config).process(0, records, MemoryState(), now_ms=t0)
    assert not result.dead_letters
    assert Decimal(result.summaries[0]["total"]) == Decimal("999999999999999.000000000000001")
