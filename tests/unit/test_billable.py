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
@settings(max_examples=200)
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
