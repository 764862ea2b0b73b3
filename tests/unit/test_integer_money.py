"""Integer units on the aggregator's hot path equal exact Decimal arithmetic.

The core sums window quantities as ints in units of 10**-VALUE_SCALE and spend in units of
10**-(VALUE_SCALE + price places), and writes records and summaries from the ints as
decimal text; Decimal appears only in an alert. These properties prove the conversion
exact and the integer results equal to the Decimal results, first for the arithmetic
alone, then end to end through the aggregator with values anywhere in the valid range
(up to 15 digits, up to 62 decimal places) and prices with up to 8 decimal places, and
across a change of prices.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
from streams.core.money import (
    EXACT,
    VALUE_SCALE,
    format_decimal,
    from_units,
    significant_digits,
    text_units,
    to_units,
    units_ceiling,
    units_text,
    value_text,
)
from streams.core.pricing import MeterRule
from streams.core.state import SpendRec, spend_key
from streams.core.windows import period_of
from streams.testing.memory_state import MemoryState
from tests.unit.test_schema_agreement import decimal_texts

MONEY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any valid event value: the schema's strings (up to 15 significant digits, up to 62
# decimal places), a few extremes, and integers.
valid_values = st.one_of(
    decimal_texts(near_misses=False).map(Decimal),
    st.sampled_from(["0", "999999999999999", "0." + "0" * 61 + "1",
                     "0." + "9" * 15, "1" * 15]).map(Decimal),
    st.integers(0, 999_999_999_999_999).map(Decimal),
).filter(lambda d: significant_digits(d) <= 15)
prices = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False,
                     allow_infinity=False)


@MONEY
@given(st.lists(valid_values, min_size=1, max_size=30), prices)
def test_sums_max_and_spend_in_units_equal_decimal(values: list[Decimal], price: Decimal) -> None:
    places = max(0, -int(price.as_tuple().exponent))
    price_units = to_units(price, places)
    units = [to_units(v, VALUE_SCALE) for v in values]
    total = Decimal(0)
    spend = Decimal(0)
    for v in values:
        total = EXACT.add(total, v)
        spend = EXACT.add(spend, EXACT.multiply(v, price))
    assert from_units(sum(units), VALUE_SCALE) == total
    assert from_units(max(units), VALUE_SCALE) == max(values)
    assert from_units(sum(u * price_units for u in units), VALUE_SCALE + places) == spend
    assert units_text(sum(units), VALUE_SCALE) == format_decimal(total)
    assert text_units(units_text(sum(units), VALUE_SCALE), VALUE_SCALE) == sum(units)


@MONEY
@given(st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False,
                   allow_infinity=False), st.integers(0, 70))
def test_units_ceiling_is_the_least_enough(amount: Decimal, scale: int) -> None:
    need = units_ceiling(amount, scale)
    assert from_units(need, scale) >= amount
    assert from_units(need - 1, scale) < amount


@MONEY
@given(st.one_of(st.integers(-(10**90), 10**90),
                 st.builds(lambda k, j: k * 10**j, st.integers(-(10**20), 10**20),
                           st.integers(0, 70))), st.integers(-5, 70))
def test_units_text_is_format_decimal(units: int, scale: int) -> None:
    assert units_text(units, scale) == format_decimal(Decimal(units).scaleb(-scale, EXACT))


@MONEY
@given(st.lists(st.one_of(st.integers(-(10**90), 10**90),
                          st.builds(lambda k: k * 10**59, st.integers(0, 10**6))),
                min_size=1, max_size=50))
def test_value_text_is_units_text_at_the_value_scale(many: list[int]) -> None:
    """value_text's memo never changes an answer, cold or warm (twice each)."""
    for units in many + many:
        assert value_text(units, VALUE_SCALE) == units_text(units, VALUE_SCALE)


T0 = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["cpu", "runs", "mem"]), valid_values,
                          st.integers(0, 5 * 60_000)), min_size=1, max_size=40),
       st.tuples(prices, prices, prices), st.lists(st.integers(1, 10**6), max_size=3),
       st.integers(1, 12))
def test_aggregator_integer_path_equals_decimal_recount(
    events: list[tuple[str, Decimal, int]], price: tuple[Decimal, Decimal, Decimal],
    thresholds: list[int], batch: int,
) -> None:
    """Summaries, spend and the alerts' spend at crossing equal a Decimal recount."""
    meters = {"cpu": MeterRule("cpu", "sum", price[0]), "runs": MeterRule("runs", "count",
              price[1]), "mem": MeterRule("mem", "max", price[2])}
    config = CoreConfig(meters=meters, window_ms=60_000, grace_ms=5_000,
                        default_thresholds=tuple(Decimal(t) for t in sorted(thresholds)))
    records = [
        SourceRecord(i, T0 + dt + 1_000, "acme", orjson.dumps(
            {"id": f"e{i}", "customer": "acme", "meter": m, "value": format_decimal(v),
             "timestamp": T0 + dt}))
        for i, (m, v, dt) in enumerate(events)
    ]
    records.append(SourceRecord(len(records), T0 + 10**8, None, None, tick_ms=T0 + 10**8))
    store = MemoryState()
    agg = Aggregator(config)
    summaries, alerts = [], []
    for i in range(0, len(records), batch):
        res = agg.process(0, records[i : i + batch], store, now_ms=0)
        store.apply(res.writes)
        summaries += res.summaries
        alerts += res.alerts
    # The Decimal recount, event by event in offset order.
    windows: dict[tuple[str, int], Decimal] = {}
    spend = Decimal(0)
    crossings: dict[str, Decimal] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for m, v, dt in events:
        ws = T0 + dt - (T0 + dt) % 60_000
        old = windows.get((m, ws))
        agg_kind = meters[m].aggregation
        new = (EXACT.add(old or Decimal(0), v) if agg_kind == "sum"
               else EXACT.add(old or Decimal(0), Decimal(1)) if agg_kind == "count"
               else v if old is None else max(old, v))
        qty = EXACT.subtract(new, old or Decimal(0))
        windows[(m, ws)] = new
        totals[m] = EXACT.add(totals[m], qty)
        spend = EXACT.add(spend, EXACT.multiply(qty, meters[m].unit_price_minor))
        for t in sorted(thresholds):
            if spend >= t and f"abs:{t}" not in crossings:
                crossings[f"abs:{t}"] = spend
    got: dict[tuple[str, int], Decimal] = {}
    for s in summaries:
        got[(s["meter"], s["window_start_ms"])] = Decimal(s["total"])
    assert got == windows
    rec = SpendRec.decode(store.data[spend_key("acme", period_of(T0))])
    assert rec.spend_minor() == spend
    assert rec.totals_minor() == dict(totals)
    assert {a["threshold"]["id"]: Decimal(a["spend_minor"]) for a in alerts} == crossings


@MONEY
@given(st.decimals(min_value=0, max_value=10**20, places=70, allow_nan=False,
                   allow_infinity=False),
       st.lists(valid_values, max_size=3), st.integers(0, 80))
def test_spend_record_reads_any_decimal_text_exactly(
    spend: Decimal, totals: list[Decimal], scale: int,
) -> None:
    """A spend record reads back exactly whatever decimal text it holds: the plain text it
    writes now, and str(Decimal) (``1E-7``, ``4.0``), which records written before spend
    was kept in ints hold. It keeps at least the scale asked for, more if the text has
    more places, and writes the same values back."""
    meters = {f"m{i}": v for i, v in enumerate(totals)}
    legacy = orjson.dumps({"c": "acme", "p": "2026-12", "t": {m: str(v) for m, v in
                                                              meters.items()},
                           "s": str(spend), "f": ["abs:100"], "a": 7, "l": 9})
    rec = SpendRec.decode(legacy, scale)
    assert rec.scale >= scale
    assert rec.spend_minor() == spend
    assert rec.totals_minor() == meters
    again = SpendRec.decode(rec.encode(), scale)
    assert (again.spend_minor(), again.totals_minor(), again.fired, again.applied,
            again.last_event_ms) == (spend, meters, ["abs:100"], 7, 9)


@MONEY
@given(st.lists(valid_values, min_size=1, max_size=15),
       st.lists(valid_values, min_size=1, max_size=15), prices, prices,
       st.lists(st.integers(1, 10**6), min_size=1, max_size=3))
# Spend with one place more than the second price list keeps: the record stays at its scale.
@example([Decimal("0." + "0" * 61 + "1")], [Decimal(1)], Decimal("0.5"), Decimal(1), [1])
def test_spend_carries_over_a_price_change_exactly(
    before: list[Decimal], after: list[Decimal], price_before: Decimal, price_after: Decimal,
    thresholds: list[int],
) -> None:
    """A spend record written under one price list keeps its exact spend under another,
    with fewer or more decimal places, and thresholds cross at the same spend as in a
    Decimal recount."""
    defaults = tuple(Decimal(t) for t in sorted(thresholds))
    store = MemoryState()
    alerts: list[dict[str, object]] = []
    spend = Decimal(0)
    crossings: dict[str, Decimal] = {}
    offset = 0
    for values, price in ((before, price_before), (after, price_after)):
        agg = Aggregator(CoreConfig(meters={"cpu": MeterRule("cpu", "sum", price)},
                                    window_ms=60_000, grace_ms=5_000,
                                    default_thresholds=defaults))
        records = []
        for v in values:
            records.append(SourceRecord(offset, T0 + offset + 1_000, "acme", orjson.dumps(
                {"id": f"e{offset}", "customer": "acme", "meter": "cpu",
                 "value": format_decimal(v), "timestamp": T0 + offset})))
            offset += 1
            spend = EXACT.add(spend, EXACT.multiply(v, price))
            for t in defaults:
                if spend >= t and f"abs:{t}" not in crossings:
                    crossings[f"abs:{t}"] = spend
        res = agg.process(0, records, store, now_ms=0)
        store.apply(res.writes)
        alerts += res.alerts
    rec = SpendRec.decode(store.data[spend_key("acme", period_of(T0))])
    assert rec.spend_minor() == spend
    assert {a["threshold"]["id"]: Decimal(str(a["spend_minor"])) for a in alerts} == crossings
