"""Closing windows in bounded sweeps (BatchSteps.sweep): every window the watermark passes
closes once, in whichever batch its sweep reaches it, with the same final summary as a
sweep without a bound; an event for a due window that the sweep has not reached closes it
first."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson

from streams.core.aggregate import Aggregator, BatchResult, CoreConfig, SourceRecord
from streams.core.pricing import MeterRule
from streams.core.state import PartitionRec
from streams.testing.memory_state import MemoryState

T0 = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000
WINDOW_MS = 60_000
CONFIG = CoreConfig(meters={"cpu": MeterRule("cpu", "sum", Decimal("1"))}, window_ms=WINDOW_MS,
                    grace_ms=5_000, idle_bound_ms=1_000, default_thresholds=(Decimal(10**9),))


def event(offset: int, customer: str, ts: int, value: str = "1") -> SourceRecord:
    body = {"id": f"e{offset}", "customer": customer, "meter": "cpu", "value": value,
            "timestamp": ts}
    return SourceRecord(offset, ts, customer, orjson.dumps(body))


def run(closes: int, records: list[SourceRecord]) -> tuple[list[BatchResult], MemoryState]:
    """One record a batch, then tick batches while the sweep has windows left."""
    agg = Aggregator(replace(CONFIG, batch_max_closes=closes, idle_max_closes=closes))
    store = MemoryState()
    results = []
    for rec in records:
        results.append(agg.process(0, [rec], store, now_ms=0))
        store.apply(results[-1].writes)
    offset = len(records)
    while results[-1].closing:
        tick = records[-1].timestamp_ms
        results.append(agg.process(0, [SourceRecord(offset, tick, None, None, tick_ms=tick)],
                                   store, now_ms=0))
        store.apply(results[-1].writes)
        offset += 1
    return results, store


def finals(results: list[BatchResult]) -> dict[str, dict[str, Any]]:
    out = {}
    for res in results:
        for s in res.summaries:
            assert s["id"] not in out, "a summary emitted twice"
            out[s["id"]] = {k: v for k, v in s.items() if k != "emitted_at_ms"}
    return out


def workload() -> list[SourceRecord]:
    """20 customers in the first window; an event past its end plus grace makes them all
    due; then a late event for customer c17 and one for a new customer."""
    recs = [event(i, f"c{i:02d}", T0 + 1_000 + i) for i in range(20)]
    recs.append(event(20, "c00", T0 + WINDOW_MS + 6_000))  # the watermark passes the end
    recs.append(event(21, "c17", T0 + 30_000, "5"))  # late
    recs.append(event(22, "new", T0 + 40_000, "7"))  # late, a window never seen
    return recs


def test_a_bounded_sweep_spreads_the_closes_and_emits_what_an_unbounded_one_does() -> None:
    unbounded, _ = run(1000, workload())
    bounded, store = run(3, workload())
    assert sum(1 for r in unbounded if r.summaries) <= 3
    # The 20 finals go out 3 window records a batch.
    per_batch = [sum(1 for s in r.summaries if s["seq"] == 0) for r in bounded]
    assert max(per_batch) <= 4  # three from the sweep, one closed by its late event
    assert sum(1 for r in bounded if r.closing) >= 5
    assert finals(bounded) == finals(unbounded)
    part = PartitionRec.decode(store.data["P|0"])
    assert part.open_ws == [T0 + WINDOW_MS] and part.close_after == ""


def test_a_late_event_closes_its_due_window_before_it_is_added() -> None:
    far = T0 + 10 * WINDOW_MS  # past the next window boundary: corrections go out
    bounded, _ = run(1, [*workload(), SourceRecord(23, far, None, None, tick_ms=far)])
    by_customer: dict[str, list[tuple[int, str]]] = {}
    for res in bounded:
        for s in res.summaries:
            by_customer.setdefault(s["customer"], []).append((s["seq"], s["delta"]))
    # c17's final holds its on-time event only; the late 5 is a correction.
    assert sorted(by_customer["c17"]) == [(0, "1"), (1, "5")]
    assert by_customer["new"] == [(0, "7")]
    # Every other window has its final only (c00 has two windows).
    assert all(seq == 0 for c, v in by_customer.items() if c != "c17" for seq, _d in v)
    assert sum(len(v) for v in by_customer.values()) == 20 + 1 + 1 + 1


def test_a_batch_of_ticks_only_closes_up_to_its_own_bound() -> None:
    """Closes are what a batch of ticks has to do: it takes on ``idle_max_closes``."""
    agg = Aggregator(replace(CONFIG, batch_max_closes=2, idle_max_closes=15))
    store = MemoryState()
    recs = workload()[:21]  # 20 windows, then the event that makes them due
    store.apply(agg.process(0, recs[:20], store, now_ms=0).writes)
    first = agg.process(0, recs[20:], store, now_ms=0)
    store.apply(first.writes)
    assert len(first.summaries) == 2 and first.closing
    tick = recs[-1].timestamp_ms
    second = agg.process(0, [SourceRecord(21, tick, None, None, tick_ms=tick)], store,
                         now_ms=0)
    store.apply(second.writes)
    assert len(second.summaries) == 15 and second.closing
    third = agg.process(0, [SourceRecord(22, tick, None, None, tick_ms=tick)], store,
                        now_ms=0)
    assert len(third.summaries) == 3 and not third.closing
