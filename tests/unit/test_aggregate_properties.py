"""Property tests of the pure aggregator: totals equal a brute-force recount.

Whatever the order, duplication and lateness of the input, whatever the batch boundaries,
and wherever the process "crashes" (only a prefix of a batch's writes survives, then the
input is replayed from an earlier committed offset), the summaries, deduplicated by id,
add up to the distinct valid events, and every threshold crossing alerts exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, BatchResult, CoreConfig, SourceRecord
from streams.core.pricing import MeterRule
from streams.core.state import dedup_key
from streams.core.windows import period_of
from streams.testing.memory_state import MemoryState

T0 = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000  # an hour boundary in Nov 2026
WINDOW_MS = 60_000
GRACE_MS = 5_000
METERS = {
    "cpu": MeterRule("cpu", "sum", Decimal("0.5")),
    "runs": MeterRule("runs", "count", Decimal("3")),
    "mem": MeterRule("mem", "max", Decimal("1")),
}
CONFIG = CoreConfig(
    meters=METERS, window_ms=WINDOW_MS, grace_ms=GRACE_MS, idle_bound_ms=1_000,
    dedup_horizon_ms=3_600_000, default_thresholds=(Decimal(50), Decimal(400)),
)


@dataclass(frozen=True)
class Ev:
    customer: str
    id: str
    meter: str
    value: Decimal
    ts: int


values = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False)
event_st = st.builds(
    Ev,
    customer=st.sampled_from(["acme", "bolt", "c|3", "düsseldorf"]),
    id=st.uuids().map(str),
    meter=st.sampled_from(sorted(METERS)),
    value=values,
    ts=st.integers(min_value=T0, max_value=T0 + 10 * WINDOW_MS),
)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[SourceRecord], list[Ev]]:
    """Source records (with duplicates, disorder, junk and ticks) and the distinct events."""
    distinct = draw(st.lists(event_st, min_size=1, max_size=60, unique_by=lambda e: e.id))
    stream: list[Ev | bytes | int] = list(distinct)
    for _ in range(draw(st.integers(0, 15))):  # producer retries: exact resends
        stream.insert(draw(st.integers(0, len(stream))), draw(st.sampled_from(distinct)))
    for junk in draw(st.lists(st.sampled_from([b"{", b"[]", b'{"id":1}', b"\xff"]), max_size=3)):
        stream.insert(draw(st.integers(0, len(stream))), junk)
    order = draw(st.permutations(range(len(stream))))
    shuffled: list[Ev | bytes | int] = [stream[i] for i in order]
    for _ in range(draw(st.integers(0, 3))):  # idle ticks in the middle
        shuffled.insert(draw(st.integers(0, len(shuffled))), draw(
            st.integers(T0, T0 + 12 * WINDOW_MS)))
    records = []
    for offset, item in enumerate(shuffled):
        if isinstance(item, int):
            records.append(SourceRecord(offset, item, None, None, tick_ms=item))
        elif isinstance(item, bytes):
            records.append(SourceRecord(offset, T0 + 20 * WINDOW_MS, "acme", item))
        else:
            body = {"id": item.id, "customer": item.customer, "meter": item.meter,
                    "value": str(item.value), "timestamp": item.ts}
            records.append(SourceRecord(offset, item.ts + 1000, item.customer, orjson.dumps(body)))
    # A final tick far ahead closes every window and flushes every correction.
    records.append(SourceRecord(len(records), T0 + 10**9, None, None, tick_ms=T0 + 10**8))
    return records, distinct


def expected(distinct: list[Ev]) -> tuple[dict[tuple[str, str], Decimal], set[tuple[str, str]]]:
    windows: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    for e in distinct:
        k = (e.customer, e.meter, e.ts - e.ts % WINDOW_MS)
        agg = METERS[e.meter].aggregation
        if agg == "sum":
            windows[k] += e.value
        elif agg == "count":
            windows[k] += 1
        else:
            windows[k] = max(windows[k], e.value) if k in windows else e.value
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (c, m, ws), v in windows.items():
        totals[(c, m)] += v
        spend[(c, period_of(ws))] += v * METERS[m].unit_price_minor
    alerts = {
        (c, f"abs:{t}") for (c, _p), s in spend.items() for t in (50, 400) if s >= t
    }
    return dict(totals), alerts


def billed(summaries: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """What the Stripe sink would bill: per-window latest total for max, deltas otherwise."""
    by_id: dict[str, dict[str, Any]] = {}
    for s in summaries:
        prev = by_id.setdefault(s["id"], s)
        assert {k: v for k, v in prev.items() if k != "emitted_at_ms"} == {
            k: v for k, v in s.items() if k != "emitted_at_ms"
        }, "one summary id carried two different contents"
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for s in by_id.values():
        out[(s["customer"], s["meter"])] += Decimal(s["delta"])
    return {k: v for k, v in out.items()}


def check_alerts(alerts: list[dict[str, Any]], want: set[tuple[str, str]]) -> None:
    by_id: dict[str, dict[str, Any]] = {}
    for a in alerts:
        prev = by_id.setdefault(a["id"], a)
        assert prev["threshold"] == a["threshold"] and prev["customer"] == a["customer"]
    assert {(a["customer"], a["threshold"]["id"]) for a in by_id.values()} == want


def finish_closes(agg: Aggregator, store: MemoryState, res: BatchResult, offset: int,
                  summaries: list[dict[str, Any]]) -> None:
    """While a batch leaves windows to close (its sweep reached its bound), run tick
    batches, as the runtime does, until none is left."""
    while res.closing:
        tick = T0 + 10**8
        res = agg.process(0, [SourceRecord(offset, tick, None, None, tick_ms=tick)], store,
                          now_ms=0)
        store.apply(res.writes)
        summaries += res.summaries
        offset += 1


# The bound on a batch's close sweep: the default, and one window record a batch (of events
# or of ticks), so that the closes of a window start spread over many batches, with events
# and crashes between.
SWEEP_BOUNDS = [CONFIG.batch_max_closes, 1]


@pytest.mark.parametrize("closes", SWEEP_BOUNDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.data())
def test_totals_equal_recount_any_batching(
    closes: int, workload: tuple[list[SourceRecord], list[Ev]], data: st.DataObject
) -> None:
    records, distinct = workload
    store = MemoryState()
    agg = Aggregator(replace(CONFIG, batch_max_closes=closes, idle_max_closes=closes))
    summaries, alerts = [], []
    i = 0
    while i < len(records):
        n = data.draw(st.integers(1, 8))
        res = agg.process(0, records[i : i + n], store, now_ms=0)
        store.apply(res.writes)
        summaries += res.summaries
        alerts += res.alerts
        i += n
    finish_closes(agg, store, res, len(records), summaries)
    want_totals, want_alerts = expected(distinct)
    assert billed(summaries) == {k: v for k, v in want_totals.items()}
    check_alerts(alerts, want_alerts)


@pytest.mark.parametrize("closes", SWEEP_BOUNDS)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.data())
def test_crashes_and_replays_never_lose_or_double_count(
    closes: int, workload: tuple[list[SourceRecord], list[Ev]], data: st.DataObject
) -> None:
    """Crash mid-batch: a prefix of the batch's writes survives; replay from the commit."""
    records, distinct = workload
    store = MemoryState()
    agg = Aggregator(replace(CONFIG, batch_max_closes=closes, idle_max_closes=closes))
    summaries, alerts = [], []
    committed = 0  # next offset to read after a restart
    i = 0
    crashes = 0
    while i < len(records):
        n = data.draw(st.integers(1, 8))
        res = agg.process(0, records[i : i + n], store, now_ms=i)
        # Outputs are published (and acked) before the state is written.
        summaries += res.summaries
        alerts += res.alerts
        if crashes < 4 and data.draw(st.booleans()):
            crashes += 1
            keep = data.draw(st.integers(0, len(res.writes)))
            store.apply(res.writes[:keep])
            # The consumer offset commit lags: restart from any batch start <= i.
            committed = data.draw(st.integers(0, i)) if i else 0
            i = committed
            continue
        store.apply(res.writes)
        i += n
    finish_closes(agg, store, res, len(records), summaries)
    want_totals, want_alerts = expected(distinct)
    assert billed(summaries) == want_totals
    check_alerts(alerts, want_alerts)


def test_invalid_and_semantic_rejections_are_dead_lettered() -> None:
    store = MemoryState()
    agg = Aggregator(CONFIG)
    ts = T0 + 1000
    recs = [
        SourceRecord(0, ts, "acme", b"not json"),
        SourceRecord(1, ts, "acme", orjson.dumps(
            {"id": "a", "customer": "acme", "meter": "disk", "value": "1", "timestamp": ts})),
        SourceRecord(2, ts, "acme", orjson.dumps(
            {"id": "b", "customer": "acme", "meter": "cpu", "value": "1",
             "timestamp": ts + 301_000})),
        SourceRecord(3, ts, "acme", orjson.dumps(
            {"id": "c", "customer": "acme", "meter": "cpu", "value": "1",
             "timestamp": ts - 36 * 86_400_000})),
        SourceRecord(4, ts, "acme", orjson.dumps([
            {"id": "d", "customer": "acme", "meter": "cpu", "value": "2", "timestamp": ts},
            {"id": "e", "customer": "bolt", "meter": "cpu", "value": "2", "timestamp": ts},
        ])),
    ]
    res = agg.process(0, recs, store, now_ms=ts)
    reasons = [(d.reason, d.offset, d.index) for d in res.dead_letters]
    assert reasons == [
        ("invalid_json", 0, None), ("unknown_meter", 1, None), ("in_future", 2, None),
        ("too_old", 3, None), ("key_mismatch", 4, 1),
    ]
    assert res.outcomes["accepted"] == 1
    assert res.dead_letters[1].original == recs[1].value


def test_one_changelog_order_partition_record_last() -> None:
    store = MemoryState()
    agg = Aggregator(CONFIG)
    ev = {"id": "x", "customer": "acme", "meter": "cpu", "value": "1", "timestamp": T0}
    res = agg.process(3, [SourceRecord(7, T0, "acme", orjson.dumps(ev))], store, now_ms=T0)
    kinds = [k[0] for k, _ in res.writes]
    assert kinds[-1] == "P"
    assert kinds.index("S") < kinds.index("W")
    assert kinds.index("D") < kinds.index("W")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.data())
def test_all_state_expires_and_dedup_marks_expire_after_the_horizon(
    workload: tuple[list[SourceRecord], list[Ev]], data: st.DataObject
) -> None:
    """Dedup marks go once stream time passes their hour plus the horizon; everything but
    the partition record goes once its billing period is past Stripe's 35-day horizon. A
    crash that cuts a batch's deletions short is repaired by the next batch."""
    records, _ = workload
    store = MemoryState()
    agg = Aggregator(CONFIG)
    res = agg.process(0, records, store, now_ms=T0)
    store.apply(res.writes)
    hour_end = T0 + 13 * WINDOW_MS - (T0 + 13 * WINDOW_MS) % 3_600_000 + 3_600_000
    # The workload's last tick is ~T0 + 10**8: far past every event hour plus the horizon.
    assert not [k for k in store.data if k.startswith("D|")], "dedup marks outlived the horizon"
    assert hour_end < T0 + 10**8 - CONFIG.idle_bound_ms - GRACE_MS
    far = T0 + 100 * 86_400_000
    tick = agg.process(0, [SourceRecord(len(records), far, None, None, tick_ms=far)], store,
                       now_ms=far)
    keep = data.draw(st.integers(0, len(tick.writes)))
    store.apply(tick.writes[:keep])  # a crash may cut the deletions short
    nxt = T0 + 101 * 86_400_000
    store.apply(agg.process(0, [SourceRecord(len(records) + 1, nxt, None, None, tick_ms=nxt)],
                            store, now_ms=nxt).writes)
    assert sorted(store.data) == ["P|0"], store.data


def test_packed_dead_letters_keep_each_event_as_encode_event_writes_it() -> None:
    """A refused event of a packed record is dead-lettered as its own wire dict, whether it
    took the decoder's fast path (no attributes) or not."""
    from streams.core.events import UsageEvent, encode_event, validate_event

    ts = T0 + 1000
    elements = [
        {"id": "a", "customer": "acme", "meter": "disk", "value": "1.50", "timestamp": ts},
        {"id": "b", "customer": "acme", "meter": "cpu", "value": 7, "timestamp": ts + 10**9},
        {"id": "c", "customer": "acme", "meter": "disk", "value": "0.0042", "timestamp": ts,
         "attributes": {"region": "eu"}},
        {"id": "d", "customer": "acme", "meter": "cpu", "value": "2",
         "timestamp": "2026-09-01T12:00:00.5+01:00"},
    ]
    rec = SourceRecord(0, ts, "acme", orjson.dumps(elements))
    res = Aggregator(CONFIG).process(0, [rec], MemoryState(), now_ms=ts)
    assert [(d.reason, d.index) for d in res.dead_letters] == [
        ("unknown_meter", 0), ("in_future", 1), ("unknown_meter", 2), ("too_old", 3)]
    for d in res.dead_letters:
        assert d.index is not None
        ev = validate_event(elements[d.index], "acme")
        assert isinstance(ev, UsageEvent)
        assert d.original == orjson.dumps(encode_event(ev))


def test_dedup_marks_use_the_state_key_layout() -> None:
    """The first pass builds dedup keys from cached prefixes: they are dedup_key's, for
    single and packed records, also when a packed record spans two hours."""
    def event(i: str, ts: int) -> dict[str, Any]:
        return {"id": i, "customer": "c|3", "meter": "cpu", "value": "1", "timestamp": ts}

    late = T0 + 3_600_000 + 1  # the next hour
    records = [
        SourceRecord(0, T0 + 1000, "c|3", orjson.dumps(event("a", T0))),
        SourceRecord(1, late + 1000, "c|3", orjson.dumps(
            [event("b", T0 + 5), event("c", late), event("d", T0 + 6)])),
        SourceRecord(2, late + 1000, "c|3", orjson.dumps(event("e", late))),
    ]
    res = Aggregator(CONFIG).process(7, records, MemoryState(), now_ms=0)
    marks = {k for k, v in res.writes if k.startswith("D|") and v is not None}
    hour = T0 - T0 % 3_600_000
    assert marks == {dedup_key(7, hour, "c|3", "a"), dedup_key(7, hour, "c|3", "b"),
                     dedup_key(7, hour + 3_600_000, "c|3", "c"),
                     dedup_key(7, hour, "c|3", "d"),
                     dedup_key(7, hour + 3_600_000, "c|3", "e")}
