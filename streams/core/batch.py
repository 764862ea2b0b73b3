"""The domain steps of one batch that are not per event: windows and spend records
entering the batch, threshold crossings, and what stream time triggers (closing windows,
flushing corrections, expiring state and dedup marks).

The per-event loop lives in streams.core.aggregate; it calls in here only on a first
touch of a key in the batch, on a threshold crossing, and when stream time reaches
:attr:`BatchSteps.trigger_ms`, the earliest stream time at which any of the time-driven
steps has work. Between triggers, moving stream time forward changes nothing but the
number, which is what lets the loop stay small.

Money is exact and integer between the edges: window quantities in units of
``10**-value_scale`` (the batch's: ``NARROW_SCALE`` when it can, else ``VALUE_SCALE``; see
streams.core.aggregate), spend in units of ``10**-spend_scale`` (the value scale plus the
most decimal places of any configured price). Records and summaries are written from
the ints as decimal text; ``Decimal`` appears only where an alert is raised, and in the
thresholds' amounts, once per threshold and scale in a batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from streams.core.cache import BatchCache, Kind
from streams.core.money import from_units, units_ceiling, value_text
from streams.core.pricing import CustomerTerms, Threshold, thresholds_for
from streams.core.state import (
    PartitionRec,
    SpendRec,
    WindowRec,
    dedup_prefix,
    expiry_key,
    expiry_prefix,
    partition_key,
    spend_decoder,
    spend_key,
    window_decoder,
    window_key,
    window_prefix,
)
from streams.core.summaries import alert_dict, summary_dict
from streams.core.windows import HOUR_MS, period_bounds_ms, period_of

if TYPE_CHECKING:
    from streams.core.aggregate import BatchResult, CoreConfig

__all__ = ["NEVER", "BatchSteps", "SpendAcc"]

NEVER = 1 << 4096  # an int above any time or amount: "no trigger", "no threshold left"
_THRESHOLD_MEMO = 4096  # distinct customer terms whose thresholds are remembered


class SpendAcc:
    """One (customer, period) in this batch: its record and what the batch added since
    the record was last brought up to date (``units`` of spend at the batch's spend scale,
    ``qty`` per meter). ``shift`` converts the former to the record's scale (1 unless the
    record was written under prices with more decimal places)."""

    __slots__ = ("guard", "key", "last_ms", "last_pos", "need", "qty", "rec", "shift",
                 "thresholds", "units")

    def __init__(self, key: str, rec: SpendRec, thresholds: tuple[Threshold, ...],
                 meters: int, spend_scale: int) -> None:
        self.key = key
        self.rec = rec
        # Events at or below the record's applied position are in it already (a replay
        # after a crash that kept the spend record but not the windows).
        self.guard = rec.applied
        self.thresholds = thresholds
        self.shift = 10 ** (rec.scale - spend_scale)
        self.units = 0
        self.qty: list[int | None] = [None] * meters
        self.last_pos = -1
        self.last_ms = 0
        self.need = NEVER


class BatchSteps:
    """State of one batch shared by the event loop and the steps."""

    def __init__(self, cfg: CoreConfig, meter_names: tuple[str, ...], value_scale: int,
                 spend_scale: int, p: int, cache: BatchCache, now_ms: int,
                 terms: Callable[[str], CustomerTerms | None], out: BatchResult,
                 thresholds_by_terms: dict[CustomerTerms | None, tuple[Threshold, ...]]
                 ) -> None:
        self.cfg = cfg
        self.meter_names = meter_names
        self.value_scale = value_scale
        self.spend_scale = spend_scale
        self.p = p
        self.cache = cache
        self.now_ms = now_ms
        self.terms = terms
        self.out = out
        raw = cache.store.get(partition_key(p))
        self.part = PartitionRec.decode(raw) if raw else PartitionRec()
        self.pending: dict[str, None] = dict.fromkeys(self.part.pending)
        self.dedup_hours = set(self.part.dedup_hours)
        self.thresholds: dict[str, tuple[Threshold, ...]] = {}
        # thresholds_for is a pure function of the terms: the aggregator keeps its results
        # across batches (bounded), most customers sharing the default terms (None).
        self.thresholds_by_terms = thresholds_by_terms
        self.periods: dict[int, tuple[str, int]] = {}
        # First touches in this batch: (customer, meter, ws) -> (window, spend, key).
        self.windows: dict[tuple[str, str, int], tuple[WindowRec, SpendAcc, str]] = {}
        # The keys of the windows the batch's events name (built once, by the first pass).
        self.window_keys: dict[tuple[str, str, int], str] = {}
        self.spends: dict[tuple[str, str], SpendAcc] = {}
        self.spend_decode = spend_decoder(spend_scale, value_scale)
        self.window_decode = window_decoder(value_scale)
        # A threshold in spend units at a record's scale, rounded up: (amount, scale) -> units.
        self.threshold_units: dict[tuple[Decimal, int], int] = {}
        self.trigger_ms = NEVER
        self.finals = self.corrections = 0  # summaries emitted (counted in the outcomes last)
        # A window start's records are deleted once the watermark passes this after it.
        self.window_span_ms = cfg.window_ms + cfg.max_age_ms + cfg.grace_ms
        # Redo the deletions the previous batch started: a crash may have cut them off.
        redo, self.part.deleting = self.part.deleting, []
        for t in redo:
            self.expire(t, record=False)
        redo_hours, self.part.dedup_deleting = self.part.dedup_deleting, []
        for hour in redo_hours:
            self.expire_dedup(hour, record=False)
        redo_starts, self.part.window_deleting = self.part.window_deleting, []
        for ws in redo_starts:
            self.expire_windows(ws, record=False)
        self.retrigger()

    # -- first touches --------------------------------------------------------------------

    def period(self, ws: int) -> tuple[str, int]:
        """The billing period of window ``ws`` and when its spend records expire.

        A window never straddles two periods: windows divide a day and are UTC-aligned.
        """
        try:
            return self.periods[ws]
        except KeyError:
            cfg = self.cfg
            period = period_of(ws)
            expiry = period_bounds_ms(period)[1] + cfg.max_age_ms + cfg.grace_ms + cfg.window_ms
            self.periods[ws] = (period, expiry)
            return period, expiry

    def _expire_at(self, t: int) -> None:
        expiries = self.part.expiries
        i = bisect.bisect_left(expiries, t)
        if i == len(expiries) or expiries[i] != t:
            expiries.insert(i, t)
            if t + self.cfg.grace_ms < self.trigger_ms:
                self.retrigger()

    def touch_window(self, customer: str, meter: str, ws: int
                     ) -> tuple[WindowRec, SpendAcc, str]:
        """Bring window (customer, meter, ws) into the batch (first touch).

        The partition record's lists are repaired on every batch that touches the window
        (a crash may have kept the window record but lost the partition record).
        """
        cfg, cache, part = self.cfg, self.cache, self.part
        names = (customer, meter, ws)
        wkey = self.window_keys.get(names) or window_key(self.p, ws, customer, meter)
        w: WindowRec | None = cache.values.get(wkey)  # prefetched for the batch
        if w is None and wkey not in cache.values:
            w = cache.get(wkey, self.window_decode)
        if w is None:
            w = WindowRec(customer, meter, ws, 0, 0, -1,
                          ws + cfg.window_ms <= part.stream_ms - cfg.grace_ms,
                          scale=self.value_scale)
        cache.put(wkey, Kind.WINDOW, w)
        starts = part.window_starts
        if not starts or starts[-1] != ws:
            i = bisect.bisect_left(starts, ws)
            if i == len(starts) or starts[i] != ws:
                starts.insert(i, ws)
                if ws + self.window_span_ms + cfg.grace_ms < self.trigger_ms:
                    self.retrigger()
        if not w.closed:
            i = bisect.bisect_left(part.open_ws, ws)
            if i == len(part.open_ws) or part.open_ws[i] != ws:
                part.open_ws.insert(i, ws)
        entry = (w, self.touch_spend(customer, ws), wkey)
        self.windows[names] = entry
        return entry

    def touch_spend(self, customer: str, ws: int) -> SpendAcc:
        period, expiry = self.period(ws)
        names = (customer, period)
        sa = self.spends.get(names)
        if sa is not None:
            return sa
        skey = spend_key(customer, period)
        s: SpendRec | None = self.cache.get(skey, self.spend_decode)
        if s is None:
            s = SpendRec(customer, period, self.spend_scale, vscale=self.value_scale)
            self.cache.put(expiry_key(self.p, expiry, skey), Kind.EXPIRY, 1)
        self._expire_at(expiry)
        found = self.thresholds.get(customer)
        if found is None:
            terms = self.terms(customer)
            found = self.thresholds_by_terms.get(terms)
            if found is None:
                if len(self.thresholds_by_terms) >= _THRESHOLD_MEMO:
                    self.thresholds_by_terms.clear()
                found = self.thresholds_by_terms[terms] = thresholds_for(
                    terms, self.cfg.default_thresholds)
            self.thresholds[customer] = found
        sa = self.spends[names] = SpendAcc(skey, s, found, len(self.meter_names),
                                           self.spend_scale)
        self._renew_need(sa)
        return sa

    def register_dedup_hour(self, hour: int) -> None:
        self.dedup_hours.add(hour)
        bisect.insort(self.part.dedup_hours, hour)
        if hour + HOUR_MS + self.cfg.dedup_horizon_ms + self.cfg.grace_ms < self.trigger_ms:
            self.retrigger()

    # -- spend ------------------------------------------------------------------------------

    def _renew_need(self, sa: SpendAcc) -> None:
        """Spend units (since the record was brought up to date) that reach the lowest
        threshold not yet fired; NEVER when none is left."""
        s = sa.rec
        for t in sa.thresholds:
            if t.id not in s.fired:
                memo = (t.amount_minor, s.scale)
                at = self.threshold_units.get(memo)
                if at is None:
                    at = self.threshold_units[memo] = units_ceiling(t.amount_minor, s.scale)
                # The least batch units u with spend + u * shift >= the threshold.
                gap = at - s.spend
                sa.need = gap if sa.shift == 1 else -(-gap // sa.shift)
                return
        sa.need = NEVER

    def cross(self, sa: SpendAcc, event_ms: int, event_id: str) -> None:
        """The event that just brought ``sa`` to its next threshold: alert every threshold
        at or below the spend now that has not fired (once per customer/period/threshold)."""
        s = sa.rec
        spend = from_units(s.spend + sa.units * sa.shift, s.scale)
        for t in sa.thresholds:
            if spend < t.amount_minor:
                break
            if t.id not in s.fired:
                s.fired.append(t.id)
                self.out.alerts.append(alert_dict(
                    customer=s.customer, period=s.period, threshold_id=t.id, kind=t.kind,
                    amount_minor=t.amount_minor, percent=t.percent, currency=self.cfg.currency,
                    spend_minor=spend, crossed_at_event_ms=event_ms, event_id=event_id,
                    emitted_at_ms=self.now_ms,
                ))
        self.cache.put(sa.key, Kind.SPEND, s)
        self._renew_need(sa)

    def flush_spend(self) -> None:
        """Bring every spend record up to date with what the batch added to it."""
        names = self.meter_names
        for sa in self.spends.values():
            if sa.last_pos < 0:
                continue
            s = sa.rec
            s.spend += sa.units if sa.shift == 1 else sa.units * sa.shift
            for i, q in enumerate(sa.qty):
                if q is not None:
                    s.add_total(names[i], q)
            s.applied = sa.last_pos
            s.last_event_ms = max(s.last_event_ms, sa.last_ms)
            sa.units, sa.qty, sa.last_pos = 0, [None] * len(names), -1
            self.cache.put(sa.key, Kind.SPEND, s)
            self._renew_need(sa)

    # -- corrections and stream time ------------------------------------------------------

    def mark_pending(self, wkey: str, w: WindowRec) -> None:
        if not w.pending:
            w.pending = True
            self.cache.put(wkey, Kind.WINDOW, w)
        was_empty = not self.pending
        self.pending[wkey] = None
        if was_empty:
            self.retrigger()

    def retrigger(self) -> None:
        """Recompute :attr:`trigger_ms`: the stream time at which the watermark reaches
        the next window boundary while corrections are pending, the first expiry, the first
        dedup hour past the horizon or the first window start past its span. (Closing
        windows needs no trigger: see :meth:`sweep`.)"""
        cfg, part = self.cfg, self.part
        at = NEVER
        if self.pending:
            wm = part.stream_ms - cfg.grace_ms
            at = min(at, (wm // cfg.window_ms + 1) * cfg.window_ms)
        if part.expiries:
            at = min(at, part.expiries[0])
        if part.dedup_hours:
            at = min(at, part.dedup_hours[0] + HOUR_MS + cfg.dedup_horizon_ms)
        if part.window_starts:
            at = min(at, part.window_starts[0] + self.window_span_ms)
        self.trigger_ms = at + cfg.grace_ms if at != NEVER else NEVER

    def advance(self, stream_ms: int) -> None:
        """Move stream time forward (never back)."""
        part = self.part
        if stream_ms > part.stream_ms:
            before = part.stream_ms
            part.stream_ms = stream_ms
            if stream_ms >= self.trigger_ms:
                self.run_due(before)

    def run_due(self, before_ms: int) -> None:
        """Stream time moved from ``before_ms`` to ``part.stream_ms`` past the trigger:
        flush corrections, expire state, in this order. A window start whose records
        expire is swept first, whatever the sweep's bound (in practice the sweep is done
        long before: the span is the billing engine's horizon)."""
        cfg, part = self.cfg, self.part
        old_wm = before_ms - cfg.grace_ms
        wm = part.stream_ms - cfg.grace_ms
        if wm // cfg.window_ms > old_wm // cfg.window_ms and self.pending:
            self._flush_corrections()
        while part.window_starts and part.window_starts[0] + self.window_span_ms <= wm:
            if part.open_ws and part.open_ws[0] <= part.window_starts[0]:
                self.sweep(None)
            self.expire_windows(part.window_starts.pop(0), record=True)
        if part.expiries and part.expiries[0] <= wm:
            self.flush_spend()  # spend records are what expires
            while part.expiries and part.expiries[0] <= wm:
                self.expire(part.expiries.pop(0), record=True)
        horizon = HOUR_MS + cfg.dedup_horizon_ms
        while part.dedup_hours and part.dedup_hours[0] + horizon <= wm:
            hour = part.dedup_hours.pop(0)
            self.dedup_hours.discard(hour)
            self.expire_dedup(hour, record=True)
        self.retrigger()

    def close_window(self, wkey: str, w: WindowRec) -> None:
        """Close one window whose end the watermark has passed: its final summary (unless
        one went out already) holds what it held when the watermark passed its end."""
        w.closed = True
        if w.emitted_seq < 0:
            self._emit(w, 0, w.value_units)
        self.cache.put(wkey, Kind.WINDOW, w)

    def due(self) -> bool:
        """Whether the watermark has passed the end of a window start with open windows."""
        part = self.part
        return bool(part.open_ws) and (
            part.open_ws[0] + self.cfg.window_ms <= part.stream_ms - self.cfg.grace_ms)

    def sweep(self, budget: int | None) -> None:
        """Close the windows the watermark has passed, in key order, looking at ``budget``
        window records at most (None: all of them).

        A window start's records may outnumber what one batch should take on (every
        customer of an hour closes at once), so the batches that follow go on where this
        one stopped (``part.close_after``). (The windows this batch wrote itself are
        closed with the slice of the store they fall in: that work is bounded by the
        batch's events.) Spreading the closes changes no summary: a due window changes
        only through an event, and the event loop closes such a window first
        (:meth:`close_window`), so a final holds the window as it was when the watermark
        passed its end, whichever batch emits it.
        """
        part, cache = self.part, self.cache
        values = cache.values
        while self.due():
            prefix = window_prefix(self.p, part.open_ws[0])
            # (A position under another start is stale: a repaired list put an earlier
            # start first. Going over closed windows again costs only the reading.)
            after = part.close_after if part.close_after.startswith(prefix) else ""
            limit = max(1, budget) if budget is not None else 1 << 62
            wkeys, resume = cache.scan_values_after(prefix, after, limit, Kind.WINDOW,
                                                    self.window_decode)
            for wkey in wkeys:
                w: WindowRec | None = values[wkey]
                if w is not None and not w.closed:
                    self.close_window(wkey, w)
            if resume is not None:
                part.close_after = resume
                return
            part.open_ws.pop(0)
            part.close_after = ""
            if budget is not None:
                budget -= len(wkeys)
                if budget <= 0:
                    return

    def _flush_corrections(self) -> None:
        self.cache.prefetch(self.pending, self.window_decode)
        values = self.cache.values
        for wkey in self.pending:
            w: WindowRec | None = values[wkey]
            if w is None:
                continue
            w.pending = False
            if w.emitted_seq < 0:
                self._emit(w, 0, w.value_units)
            elif w.value_units != w.emitted_units:
                self._emit(w, w.emitted_seq + 1, w.value_units - w.emitted_units)
            self.cache.put(wkey, Kind.WINDOW, w)
        self.pending.clear()

    def _emit(self, w: WindowRec, seq: int, delta_units: int) -> None:
        rule = self.cfg.meters[w.meter]
        total = value_text(w.value_units, w.scale)
        self.out.summaries.append(summary_dict(
            customer=w.customer, meter=w.meter, aggregation=rule.aggregation,
            window_start_ms=w.ws, window_ms=self.cfg.window_ms, seq=seq, total=total,
            delta=total if delta_units == w.value_units else value_text(delta_units, w.scale),
            event_count=w.count, period=self.period(w.ws)[0], emitted_at_ms=self.now_ms,
        ))
        if seq:
            self.corrections += 1
        else:
            self.finals += 1
        w.emitted_seq = seq
        w.emitted_units = w.value_units

    def expire(self, t: int, *, record: bool) -> None:
        """Delete every spend record whose expiry entry falls due at ``t``, and the entries."""
        if record:
            self.part.deleting.append(t)
        prefix = expiry_prefix(self.p, t)
        cache = self.cache
        for xkey in cache.scan(prefix, Kind.EXPIRY):
            cache.delete(xkey[len(prefix):], Kind.SPEND)
            cache.delete(xkey, Kind.EXPIRY)

    def expire_windows(self, ws: int, *, record: bool) -> None:
        """Delete the window records of window start ``ws``: every key under its prefix."""
        if record:
            self.part.window_deleting.append(ws)
        cache = self.cache
        for wkey in cache.scan(window_prefix(self.p, ws), Kind.WINDOW):
            cache.delete(wkey, Kind.WINDOW)
            self.pending.pop(wkey, None)

    def expire_dedup(self, hour: int, *, record: bool) -> None:
        """Delete the dedup marks of event-time ``hour``: every key under its prefix."""
        if record:
            self.part.dedup_deleting.append(hour)
        prefix = dedup_prefix(self.p, hour)
        cache = self.cache
        for key in list(cache.store.keys_with_prefix(prefix)):
            cache.delete(key, Kind.DEDUP)
        for key in [k for k in cache.dirty(Kind.DEDUP) if k.startswith(prefix)]:
            cache.delete(key, Kind.DEDUP)

