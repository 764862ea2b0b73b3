"""Properties of the sink's plan: summary v1 -> Stripe meter events."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.config import MeterSettings
from streams.core.money import EXACT, significant_digits
from streams.core.summaries import summary_id
from streams.errors import PlanError, RetryableSinkError
from streams.sink.plan import (
    MAX_DIGITS,
    STRIPE_MAX_FUTURE_S,
    STRIPE_MAX_PAST_S,
    Summary,
    canonical,
    identifier_base,
    parse_summary,
    plan_events,
    plan_values,
    split_parts,
    split_value,
    timestamp_for,
    window_problems,
)

HOUR_MS = 3_600_000
NOW_MS = 1_795_000_000_000
DELTA = MeterSettings(name="cpu_seconds", stripe_event_name="cpu_seconds")
HOURLY = MeterSettings(name="gpu_seconds", stripe_event_name="gpu_seconds", stripe_window="hour")


def decimals(max_digits: int = 40) -> st.SearchStrategy[Decimal]:
    """Positive decimals with up to ``max_digits`` digits at any scale."""
    return st.builds(
        lambda coeff, exp: Decimal((0, tuple(int(c) for c in str(coeff)), exp)),
        st.integers(min_value=1, max_value=10**max_digits - 1),
        st.integers(min_value=-30, max_value=3),
    )


def make_summary(
    customer: str = "c-1",
    meter: str = "cpu_seconds",
    window_start_ms: int = NOW_MS - NOW_MS % HOUR_MS - HOUR_MS,
    seq: int = 0,
    total: Decimal = Decimal("12.5"),
    delta: Decimal | None = None,
    window_ms: int = HOUR_MS,
    event_count: int = 10**9,
) -> Summary:
    return Summary(
        id=summary_id(customer, meter, window_start_ms, seq),
        customer=customer,
        meter=meter,
        window_start_ms=window_start_ms,
        window_end_ms=window_start_ms + window_ms,
        seq=seq,
        total=total,
        delta=total if delta is None else delta,
        event_count=event_count,
    )


# -- splitting ------------------------------------------------------------------------------

@given(decimals())
@settings(max_examples=500)
def test_parts_add_up_exactly_and_fit_stripe(value: Decimal) -> None:
    whole, tail = split_parts(value)
    largest = Decimal(10**MAX_DIGITS - 1)
    total = EXACT.multiply(largest, Decimal(whole))
    for part in tail:
        assert part > 0
        assert significant_digits(part) <= MAX_DIGITS
        total = EXACT.add(total, part)
    assert total == value
    if significant_digits(value) <= MAX_DIGITS:
        assert (whole, tail) == (0, (value,))
    if whole < 1000:
        listed = Decimal(0)
        for part in split_value(value):
            listed = EXACT.add(listed, part)
        assert listed == value


def test_issue_13_large_window_total_is_billed_exactly() -> None:
    """121 events of 999999999999999 and 120 of 0.000000000000001 in one window: the total
    needs 121 whole parts and one fraction, and every valid total is billed exactly."""
    value = Decimal(0)
    for _ in range(121):
        value = EXACT.add(value, Decimal("999999999999999"))
    for _ in range(120):
        value = EXACT.add(value, Decimal("0.000000000000001"))
    assert str(value) == "120999999999999879.000000000000120"
    summary = make_summary(total=value, event_count=241)
    events = plan_events(summary, DELTA, "cus_1", NOW_MS)
    assert len(events) == 122
    sent = Decimal(0)
    for event in events:
        assert significant_digits(event.value) <= MAX_DIGITS
        sent = EXACT.add(sent, event.value)
    assert sent == value
    ids = [e.identifier for e in events]
    assert len(set(ids)) == 122
    assert ids[0] == f"{identifier_base(summary.id)}.p1of122"
    assert ids == [e.identifier for e in plan_events(summary, DELTA, "cus_1", NOW_MS + 1)]


@given(st.integers(min_value=1, max_value=10**6),
       st.lists(decimals(15).filter(lambda d: d < 10**15), min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)  # exact Decimal sums of a million events vary
def test_a_window_never_needs_more_whole_parts_than_events(repeat: int,
                                                           values: list[Decimal]) -> None:
    """However many valid events (each below 10**15) add up to a total, its split has at
    most one whole part per event, so the sink never refuses a valid total."""
    total = Decimal(0)
    for v in values:
        total = EXACT.add(total, EXACT.multiply(v, Decimal(repeat)))
    count = repeat * len(values)
    planned = plan_values(make_summary(total=total, event_count=count), DELTA)
    assert 1 <= len(planned) <= count + 5
    # Indexing and slicing agree; the last part closes the sum exactly.
    assert planned[-1] == planned[len(planned) - 1]
    assert planned[: len(planned)][-1] == planned[-1]


def test_a_total_beyond_its_event_count_is_an_invalid_summary() -> None:
    value = Decimal(10**15 - 1) * 4
    plan_values(make_summary(total=value, event_count=4), DELTA)
    with pytest.raises(PlanError) as info:
        plan_values(make_summary(total=value, event_count=3), DELTA)
    assert info.value.reason == "invalid_summary"


def test_a_long_split_is_lazy() -> None:
    """A window of ten million maximal events: its ten million parts never sit in a list."""
    count = 10_000_000
    value = Decimal(10**15 - 1) * count + Decimal("0.5")
    planned = plan_values(make_summary(total=value, event_count=count), DELTA)
    assert len(planned) == count + 1
    base = identifier_base(make_summary(total=value, event_count=count).id)
    assert planned[count] == (f"{base}.p{count + 1}of{count + 1}", Decimal("0.5"))
    assert planned[5:7] == [(f"{base}.p6of{count + 1}", Decimal(10**15 - 1)),
                            (f"{base}.p7of{count + 1}", Decimal(10**15 - 1))]


def test_split_examples() -> None:
    assert split_value(Decimal("123456789.123456789")) == [
        Decimal("123456789.123456"), Decimal("0.000000789")]
    assert split_value(Decimal("1000000000000000")) == [
        Decimal("999999999999999"), Decimal("1")]
    assert split_value(Decimal("12.50")) == [Decimal("12.5")]
    assert str(canonical(Decimal("1E+3"))) == "1000"


# -- identifiers ----------------------------------------------------------------------------

keys = st.tuples(
    st.text(alphabet="abc-_1é", min_size=1, max_size=8),
    st.sampled_from(["cpu_seconds", "gpu_seconds"]),
    st.integers(min_value=0, max_value=5).map(lambda h: NOW_MS - NOW_MS % HOUR_MS - h * HOUR_MS),
    st.integers(min_value=0, max_value=3),
)


@given(st.lists(st.tuples(keys, decimals(25)), min_size=1, max_size=30,
                unique_by=lambda kv: kv[0]))
@settings(max_examples=200)
def test_identifiers_unique_deterministic_and_short(items: list[tuple[tuple[str, str, int, int],
                                                                     Decimal]]) -> None:
    seen: set[str] = set()
    for (customer, meter, start, seq), value in items:
        if int(value) > 99 * (10**MAX_DIGITS - 1):
            continue  # builds every event: keep the lists short (laziness is tested below)
        summary = make_summary(customer, meter, start, seq, value)
        first = plan_events(summary, DELTA, "cus_1", NOW_MS)
        again = plan_events(summary, DELTA, "cus_1", NOW_MS + 60_000)
        assert [e.identifier for e in first] == [e.identifier for e in again]
        for event in first:
            assert len(event.identifier) <= 100
            assert event.identifier not in seen
            seen.add(event.identifier)


def test_identifier_base_hashes_unusual_ids() -> None:
    assert identifier_base("ms1_abc") == "ms1_abc"
    odd = identifier_base("x" * 200)
    assert odd.startswith("msh_") and len(odd) == 44
    assert identifier_base("a b") != identifier_base("a_b")


# -- timestamps -----------------------------------------------------------------------------

@given(
    start_ms=st.integers(min_value=NOW_MS - 40 * 86_400_000, max_value=NOW_MS + 3_600_000),
    length_ms=st.integers(min_value=1_000, max_value=86_400_000),
    now_jitter_ms=st.integers(min_value=-10_000, max_value=10_000),
)
@settings(max_examples=1000)
def test_timestamp_inside_window_and_stripe_limits(
    start_ms: int, length_ms: int, now_jitter_ms: int
) -> None:
    now_ms = NOW_MS + now_jitter_ms
    end_ms = start_ms + length_ms
    try:
        ts = timestamp_for(start_ms, end_ms, now_ms)
    except PlanError as exc:
        assert exc.reason in ("too_old_for_stripe", "invalid_summary")
        if exc.reason == "too_old_for_stripe":
            assert end_ms <= now_ms - STRIPE_MAX_PAST_S * 1000 + 3600_000
        return
    except RetryableSinkError as exc:
        assert start_ms > now_ms
        assert exc.retry_after_s is not None and exc.retry_after_s > 0
        return
    assert start_ms <= ts * 1000 < end_ms
    assert now_ms // 1000 - STRIPE_MAX_PAST_S < ts <= now_ms // 1000 + STRIPE_MAX_FUTURE_S


def test_old_window_is_clamped_not_refused_while_it_overlaps() -> None:
    # A day window whose start is 35 days and 1 hour ago: the end is still acceptable.
    start = NOW_MS - (35 * 86_400 + 3600) * 1000
    ts = timestamp_for(start, start + 86_400_000, NOW_MS)
    assert ts * 1000 > start
    assert ts >= NOW_MS // 1000 - STRIPE_MAX_PAST_S


def test_too_old_window_is_permanent() -> None:
    start = NOW_MS - 40 * 86_400_000
    with pytest.raises(PlanError) as info:
        plan_events(make_summary(window_start_ms=start), DELTA, "cus_1", NOW_MS)
    assert info.value.reason == "too_old_for_stripe"


# -- modes ----------------------------------------------------------------------------------

def test_delta_mode_sends_delta_and_skips_zero() -> None:
    s = make_summary(seq=1, total=Decimal("30"), delta=Decimal("5"))
    [event] = plan_events(s, DELTA, "cus_9", NOW_MS)
    assert event.value == Decimal("5") and event.stripe_customer_id == "cus_9"
    assert event.identifier == s.id and event.event_name == "cpu_seconds"
    assert plan_events(make_summary(seq=2, total=Decimal("30"), delta=Decimal(0)),
                       DELTA, "cus_9", NOW_MS) == []


def test_pre_aggregated_sends_total_with_fresh_identifier_per_seq() -> None:
    start = NOW_MS - NOW_MS % HOUR_MS - HOUR_MS
    s0 = make_summary(meter="gpu_seconds", window_start_ms=start, seq=0, total=Decimal("10"))
    s1 = make_summary(meter="gpu_seconds", window_start_ms=start, seq=1, total=Decimal("12"),
                      delta=Decimal("2"))
    [e0] = plan_events(s0, HOURLY, "cus_1", NOW_MS)
    [e1] = plan_events(s1, HOURLY, "cus_1", NOW_MS)
    assert (e0.value, e1.value) == (Decimal("10"), Decimal("12"))
    assert e0.identifier != e1.identifier
    assert e0.timestamp_s == e1.timestamp_s == start // 1000


def test_pre_aggregated_cannot_split() -> None:
    s = make_summary(meter="gpu_seconds", total=Decimal("1234567890.1234567"))
    with pytest.raises(PlanError) as info:
        plan_events(s, HOURLY, "cus_1", NOW_MS)
    assert info.value.reason == "too_many_digits"


def test_pre_aggregated_window_must_match() -> None:
    s = make_summary(meter="gpu_seconds", window_ms=900_000)
    with pytest.raises(PlanError) as info:
        plan_events(s, HOURLY, "cus_1", NOW_MS)
    assert info.value.reason == "window_mismatch"
    assert window_problems([HOURLY], 900) and not window_problems([HOURLY, DELTA], 3600)


def test_split_summary_gets_suffixed_identifiers() -> None:
    s = make_summary(total=Decimal("123456789.123456789"))
    events = plan_events(s, DELTA, "cus_1", NOW_MS)
    assert [e.identifier for e in events] == [f"{s.id}.p1of2", f"{s.id}.p2of2"]


def test_negative_value_is_refused() -> None:
    with pytest.raises(PlanError) as info:
        plan_events(make_summary(total=Decimal("-1")), DELTA, "cus_1", NOW_MS)
    assert info.value.reason == "negative_value"


# -- parsing --------------------------------------------------------------------------------

def _wire(**changes: object) -> bytes:
    obj: dict[str, object] = {
        "schema": "meter_summary.v1", "id": "ms1_x", "customer": "c-1",
        "meter": "cpu_seconds", "aggregation": "sum", "window_start_ms": 0,
        "window_end_ms": HOUR_MS, "seq": 0, "kind": "final", "total": "1.5",
        "delta": "1.5", "event_count": 1, "period": "1970-01", "emitted_at_ms": 1,
    }
    obj.update(changes)
    return orjson.dumps(obj)


def test_parse_summary_exact_and_strict() -> None:
    s = parse_summary(_wire(total="123456789012345678.000000001", delta=7))
    assert s.total == Decimal("123456789012345678.000000001") and s.delta == Decimal(7)
    for bad in (_wire(total=1.5), _wire(schema="x"), _wire(window_end_ms=0), b"{",
                _wire(seq=True), _wire(delta="NaN")):
        with pytest.raises(PlanError) as info:
            parse_summary(bad)
        assert info.value.reason == "invalid_summary"
