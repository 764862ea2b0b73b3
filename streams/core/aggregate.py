"""The aggregator: one partition's batch of source records in, state writes and outputs out.

Pure: no Kafka, no Faust, no clock. The caller (streams.runtime) hands in the records of
one partition in offset order, a read-only view of that partition's state, and the wall
time for ``emitted_at_ms``. It gets back the state writes (in the order they must be
written) and the summaries, alerts and dead letters to publish.

Why replays are harmless (the full argument is in docs/exactly-once.md):

1. Everything an output says is a function of the source log alone. Windows close when
   the watermark, derived from event times in offset order, passes their end; idle
   partitions are moved on by *tick* records that the runtime writes into the source
   partition, so they too are part of the log. ``too_old`` and ``in_future`` are judged
   against the record's own Kafka timestamp, not the clock. Corrections flush when the
   watermark crosses a window boundary.
2. Every record an event changes carries the highest event position it has applied; a
   replayed event finds its position applied and changes nothing.
3. Writes of one batch go out in a fixed order: indexes, dedup marks, spend, windows,
   the partition record, then expiry deletions. The state restored after a crash is a
   prefix of that sequence, so "window applied" implies "spend applied", "partition
   record written" implies "every update of the batch written", and no replayed event
   can see a deletion without also seeing the stream time that justified it (the
   partition record lists the deletions it started, and the next batch repeats them).
4. The runtime publishes a batch's outputs and waits for Kafka's acks before it writes
   the batch's state. A replay may therefore publish an output again, but with the same
   id and the same content, and consumers dedup by id.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson

from streams.core.events import UsageEvent, decode_record, encode_event
from streams.core.money import EXACT
from streams.core.pricing import CustomerTerms, MeterRule, Threshold, thresholds_for
from streams.core.state import (
    POS_SCALE,
    PartitionRec,
    SpendRec,
    WindowRec,
    dedup_key,
    dedup_prefix,
    expiry_key,
    expiry_prefix,
    index_key,
    index_prefix,
    parse_index_key,
    partition_key,
    spend_key,
    window_key,
)
from streams.core.summaries import alert_dict, summary_dict
from streams.core.windows import HOUR_MS, period_bounds_ms, period_of, window_start

__all__ = ["Aggregator", "BatchResult", "CoreConfig", "DeadLetter", "SourceRecord", "StateReader"]

_ONE = Decimal(1)
_YEAR_10000_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
# A dead letter keeps at most this many characters of its record's key (a valid key, a
# customer id, has at most 128).
_MAX_DEAD_LETTER_KEY = 1024
# Write order within a batch (see the module docstring, point 3); deletions follow P.
_RANK = {"X": 0, "I": 1, "D": 2, "S": 3, "W": 4}


class StateReader(Protocol):
    """Read access to one partition's state."""

    def get(self, key: str) -> bytes | None: ...

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        """Every key that starts with ``prefix`` (in any order)."""
        ...


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of usage.events, as the core needs it.

    timestamp_ms: the Kafka record timestamp (producer CreateTime): the reference "now"
        for in_future and too_old, so the verdict is the same on every replay.
    tick_ms: set for a tick record (no event): moves stream time to ``tick_ms`` minus the
        idle bound.
    """

    offset: int
    timestamp_ms: int
    key: str | None
    value: bytes | None
    tick_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Aggregation settings, in ms and exact Decimals."""

    meters: Mapping[str, MeterRule]
    window_ms: int = 3_600_000
    grace_ms: int = 300_000
    dedup_horizon_ms: int = 48 * HOUR_MS
    idle_bound_ms: int = 60_000
    max_future_ms: int = 300_000
    max_age_ms: int = 35 * 86_400_000
    default_thresholds: tuple[Decimal, ...] = (Decimal(10_000),)
    currency: str = "usd"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input the aggregator refused, with where it came from."""

    key: str | None
    reason: str
    detail: str
    offset: int
    index: int | None
    original: bytes


@dataclass(slots=True)
class BatchResult:
    """What one batch produced. ``writes`` must be applied in order; None deletes."""

    writes: list[tuple[str, bytes | None]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    last_event_ms: int | None = None
    stream_ms: int = 0
    open_windows: int = 0
    pending_corrections: int = 0


TermsLookup = Callable[[str], CustomerTerms | None]


class Aggregator:
    """Stateless over calls: all state is read from and written back to the store."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config

    def process(
        self,
        partition: int,
        records: Sequence[SourceRecord],
        store: StateReader,
        *,
        now_ms: int,
        terms: TermsLookup = lambda _c: None,
    ) -> BatchResult:
        batch = _Batch(self.config, partition, store, now_ms, terms)
        for rec in records:
            batch.record(rec)
        return batch.finish()


class _Batch:
    def __init__(
        self, cfg: CoreConfig, p: int, store: StateReader, now_ms: int, terms: TermsLookup
    ) -> None:
        self.cfg = cfg
        self.p = p
        self.store = store
        self.now_ms = now_ms
        self.terms = terms
        self.cache: dict[str, Any] = {}
        self.dirty: dict[str, None] = {}
        self.deleted: dict[str, None] = {}
        self.out = BatchResult()
        raw = store.get(partition_key(p))
        self.part = PartitionRec.decode(raw) if raw else PartitionRec()
        self.pending: dict[str, None] = dict.fromkeys(self.part.pending)
        # Fixed for the length of one (synchronous) batch, so computed once per key:
        # a customer's thresholds (a table read plus a sort), and a window's billing
        # period with the time its spend record expires.
        self.thresholds: dict[str, tuple[Threshold, ...]] = {}
        self.periods: dict[int, tuple[str, int]] = {}
        # Window and spend keys whose index and expiry entries this batch has made (the
        # entries are idempotent, so once per key per batch is enough), by their names.
        self.wkeys: dict[tuple[str, str, int], str] = {}
        self.skeys: dict[tuple[str, str], str] = {}
        # Redo the deletions the previous batch started: a crash may have cut them off.
        redo, self.part.deleting = self.part.deleting, []
        for t in redo:
            self._expire(t, record=False)
        redo, self.part.dedup_deleting = self.part.dedup_deleting, []
        for hour in redo:
            self._expire_dedup(hour, record=False)

    # -- state access -------------------------------------------------------------------

    def _load(self, key: str, decode: Callable[[bytes], Any]) -> Any:
        try:
            return self.cache[key]
        except KeyError:
            raw = None if key in self.deleted else self.store.get(key)
            val = decode(raw) if raw is not None else None
            self.cache[key] = val
            return val

    def _put(self, key: str, val: Any) -> None:
        self.cache[key] = val
        self.dirty[key] = None
        self.deleted.pop(key, None)

    def _delete(self, key: str) -> None:
        self.cache[key] = None
        self.dirty.pop(key, None)
        self.deleted[key] = None

    def _mark(self, key: str) -> None:
        """Write the index entry ``key`` unless the state already holds it."""
        if self._load(key, int) is None:
            self._put(key, 1)

    def _scan(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` as this batch sees them (store, plus writes, minus deletes)."""
        keys = {k for k in self.store.keys_with_prefix(prefix) if k not in self.deleted}
        keys.update(k for k in self.dirty if k.startswith(prefix))
        return sorted(keys)

    def _expire_at(self, t: int, key: str) -> None:
        self._mark(expiry_key(self.p, t, key))
        i = bisect.bisect_left(self.part.expiries, t)
        if i == len(self.part.expiries) or self.part.expiries[i] != t:
            self.part.expiries.insert(i, t)

    @property
    def watermark(self) -> int:
        return self.part.stream_ms - self.cfg.grace_ms

    # -- records and events -------------------------------------------------------------

    def record(self, rec: SourceRecord) -> None:
        if rec.offset <= self.part.applied:
            self.out.outcomes["replayed"] += 1
            return
        if rec.tick_ms is not None:
            # A tick is written with the wall time as header and as record timestamp, the
            # latter a moment later. A forged tick header cannot move stream time past its
            # record's timestamp, which the broker bounds (log.message.timestamp.after.max.ms).
            self._advance(min(rec.tick_ms, rec.timestamp_ms) - self.cfg.idle_bound_ms)
        else:
            # A record without a key is never a customer's: its events are key_mismatch.
            # (Skipping the key check would let them land on another customer's partition,
            # where a second window of theirs would emit summaries with the same ids.)
            events, rejections = decode_record(rec.value, "" if rec.key is None else rec.key)
            bad = set()
            for rej in rejections:
                if rej.index is not None:
                    bad.add(rej.index)
                self._dead(rec, rej.reason, rej.detail, rej.index, rej.original)
            single = rec.value is not None and rec.value.lstrip()[:1] != b"["
            index = 0
            for ev in events:
                while index in bad:
                    index += 1
                self._event(rec, index, ev, single)
                index += 1
        self.part.applied = rec.offset

    def _dead(
        self, rec: SourceRecord, reason: str, detail: str, index: int | None, original: bytes
    ) -> None:
        self.out.outcomes[f"invalid:{reason}"] += 1
        key = rec.key
        if key is not None and len(key) > _MAX_DEAD_LETTER_KEY:
            key = key[:_MAX_DEAD_LETTER_KEY]  # so that the dead letter fits in a message
        self.out.dead_letters.append(DeadLetter(key, reason, detail, rec.offset, index, original))

    def _event(self, rec: SourceRecord, index: int, ev: UsageEvent, single: bool) -> None:
        cfg = self.cfg
        rule = cfg.meters.get(ev.meter)
        where = None if single else index
        if rule is None:
            self._dead(rec, "unknown_meter", f"meter {ev.meter[:60]!r} is not configured",
                       where, _original(rec, ev, single))
            return
        ts = ev.timestamp_ms
        ws = window_start(ts, cfg.window_ms)
        # Past year 9999 no billing period exists; only a record timestamp that far ahead
        # (a broker without log.message.timestamp.after.max.ms) lets such an event here.
        if ts > rec.timestamp_ms + cfg.max_future_ms or ts >= _YEAR_10000_MS:
            self._dead(rec, "in_future", "event time is more than the allowed skew ahead of "
                       "the record's produce time", where, _original(rec, ev, single))
            return
        # Also too old once its window's state may have expired (see _expire).
        expired = ws + cfg.window_ms + cfg.max_age_ms <= self.watermark
        if ts < rec.timestamp_ms - cfg.max_age_ms or expired:
            self._dead(rec, "too_old", "event time is older than Stripe's 35-day horizon",
                       where, _original(rec, ev, single))
            return
        pos = rec.offset * POS_SCALE + index
        if not self._dedup(ev, pos):
            self.out.outcomes["duplicate"] += 1
            return

        names = (ev.customer, ev.meter, ws)
        known = self.wkeys.get(names)
        wkey = known or window_key(ev.customer, ev.meter, ws)
        w: WindowRec | None = self._load(wkey, WindowRec.decode)
        if known is None or w is None:
            # First touch of this window in this batch (or it is new). Registration is
            # idempotent and repeated in every batch that touches the window, so a crash
            # that kept the window record but lost the partition record cannot orphan it.
            self.wkeys[names] = wkey
            if w is None:
                w = WindowRec(ev.customer, ev.meter, ws,
                              closed=ws + cfg.window_ms <= self.watermark)
            ikey = index_key(self.p, ws, ev.customer, ev.meter)
            self._mark(ikey)
            expiry = ws + cfg.window_ms + cfg.max_age_ms + cfg.grace_ms
            self._expire_at(expiry, wkey)
            self._expire_at(expiry, ikey)
            if not w.closed:
                i = bisect.bisect_left(self.part.open_ws, ws)
                if i == len(self.part.open_ws) or self.part.open_ws[i] != ws:
                    self.part.open_ws.insert(i, ws)
        if pos <= w.applied:
            # Applied before a crash; the spend record was written before it, so it holds too.
            self.out.outcomes["replayed"] += 1
            if w.closed and (w.emitted_seq < 0 or w.value != w.emitted_value):
                self._mark_pending(wkey, w)
            # Stream time is a function of the log: the event moved it the first time, so
            # it must move it again, or a window it closed would close later, with more
            # events, under the same summary id.
            self._advance(ts)
            return
        old = w.value
        if rule.aggregation == "sum":
            w.value = EXACT.add(old, ev.value)
        elif rule.aggregation == "count":
            w.value = EXACT.add(old, _ONE)
        else:
            w.value = max(old, ev.value) if w.count else ev.value
        w.count += 1
        w.applied = pos
        if w.closed:
            self.out.outcomes["late"] += 1
            self._mark_pending(wkey, w)
        else:
            self.out.outcomes["accepted"] += 1
        self._put(wkey, w)
        self._spend(ev, pos, rule, EXACT.subtract(w.value, old))
        last = self.out.last_event_ms
        self.out.last_event_ms = ts if last is None or ts > last else last
        self._advance(ts)

    def _dedup(self, ev: UsageEvent, pos: int) -> bool:
        """True when the event is new (or is the original being replayed)."""
        hour = ev.timestamp_ms - ev.timestamp_ms % HOUR_MS
        if hour + HOUR_MS + self.cfg.dedup_horizon_ms <= self.watermark:
            return True  # beyond the dedup horizon: its marks are gone, as Stripe's would be
        dkey = dedup_key(self.p, hour, ev.customer, ev.id)
        first: int | None = self._load(dkey, int)
        if first is None:
            self._put(dkey, pos)
            hours = self.part.dedup_hours
            if not hours or hours[-1] != hour:
                i = bisect.bisect_left(hours, hour)
                if i == len(hours) or hours[i] != hour:
                    hours.insert(i, hour)
            return True
        return first == pos

    def _period(self, ws: int) -> tuple[str, int]:
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

    def _thresholds(self, customer: str) -> tuple[Threshold, ...]:
        try:
            return self.thresholds[customer]
        except KeyError:
            found = thresholds_for(self.terms(customer), self.cfg.default_thresholds)
            self.thresholds[customer] = found
            return found

    def _spend(self, ev: UsageEvent, pos: int, rule: MeterRule, qty: Decimal) -> None:
        cfg = self.cfg
        period, expiry = self._period(window_start(ev.timestamp_ms, cfg.window_ms))
        names = (ev.customer, period)
        skey = self.skeys.get(names)
        if skey is None:  # first touch in this batch: register its expiry (idempotent)
            skey = self.skeys[names] = spend_key(ev.customer, period)
            self._expire_at(expiry, skey)
        s: SpendRec | None = self._load(skey, SpendRec.decode)
        if s is None:
            s = SpendRec(ev.customer, period)
        if pos <= s.applied:
            return
        s.totals[ev.meter] = EXACT.add(s.totals.get(ev.meter, Decimal(0)), qty)
        s.spend_minor = EXACT.add(s.spend_minor, EXACT.multiply(qty, rule.unit_price_minor))
        s.applied = pos
        s.last_event_ms = max(s.last_event_ms, ev.timestamp_ms)
        for t in self._thresholds(ev.customer):
            if s.spend_minor < t.amount_minor:
                break
            if t.id not in s.fired:
                s.fired.append(t.id)
                self.out.alerts.append(alert_dict(
                    customer=ev.customer, period=period, threshold_id=t.id, kind=t.kind,
                    amount_minor=t.amount_minor, percent=t.percent, currency=cfg.currency,
                    spend_minor=s.spend_minor, crossed_at_event_ms=ev.timestamp_ms,
                    event_id=ev.id, emitted_at_ms=self.now_ms,
                ))
        self._put(skey, s)

    def _mark_pending(self, wkey: str, w: WindowRec) -> None:
        if not w.pending:
            w.pending = True
            self._put(wkey, w)
        self.pending[wkey] = None

    # -- stream time ----------------------------------------------------------------------

    def _advance(self, stream_ms: int) -> None:
        """Move stream time forward; close windows, flush corrections, expire state."""
        if stream_ms <= self.part.stream_ms:
            return
        cfg = self.cfg
        old_wm = self.watermark
        self.part.stream_ms = stream_ms
        wm = self.watermark
        while self.part.open_ws and self.part.open_ws[0] + cfg.window_ms <= wm:
            self._close(self.part.open_ws.pop(0))
        if wm // cfg.window_ms > old_wm // cfg.window_ms and self.pending:
            self._flush_corrections()
        while self.part.expiries and self.part.expiries[0] <= wm:
            self._expire(self.part.expiries.pop(0), record=True)
        horizon = HOUR_MS + cfg.dedup_horizon_ms
        while self.part.dedup_hours and self.part.dedup_hours[0] + horizon <= wm:
            self._expire_dedup(self.part.dedup_hours.pop(0), record=True)

    def _close(self, ws: int) -> None:
        prefix = index_prefix(self.p, ws)
        for ikey in self._scan(prefix):
            customer, meter = parse_index_key(ikey, prefix)
            wkey = window_key(customer, meter, ws)
            w: WindowRec | None = self._load(wkey, WindowRec.decode)
            if w is None or w.closed:
                continue
            w.closed = True
            if w.emitted_seq < 0:
                self._emit(w, 0, w.value)
            self._put(wkey, w)

    def _flush_corrections(self) -> None:
        for wkey in self.pending:
            w: WindowRec | None = self._load(wkey, WindowRec.decode)
            if w is None:
                continue
            w.pending = False
            if w.emitted_seq < 0:
                self._emit(w, 0, w.value)
            elif w.value != w.emitted_value:
                self._emit(w, w.emitted_seq + 1, EXACT.subtract(w.value, w.emitted_value))
            self._put(wkey, w)
        self.pending.clear()

    def _emit(self, w: WindowRec, seq: int, delta: Decimal) -> None:
        rule = self.cfg.meters[w.meter]
        self.out.summaries.append(summary_dict(
            customer=w.customer, meter=w.meter, aggregation=rule.aggregation,
            window_start_ms=w.ws, window_ms=self.cfg.window_ms, seq=seq, total=w.value,
            delta=delta, event_count=w.count, period=self._period(w.ws)[0],
            emitted_at_ms=self.now_ms,
        ))
        self.out.outcomes["summary:final" if seq == 0 else "summary:correction"] += 1
        w.emitted_seq = seq
        w.emitted_value = w.value

    def _expire(self, t: int, *, record: bool) -> None:
        if record:
            self.part.deleting.append(t)
        prefix = expiry_prefix(self.p, t)
        for xkey in self._scan(prefix):
            key = xkey[len(prefix):]
            self._delete(key)
            self.pending.pop(key, None)
            self._delete(xkey)

    def _expire_dedup(self, hour: int, *, record: bool) -> None:
        """Delete the dedup marks of event-time ``hour``: every key under its prefix."""
        if record:
            self.part.dedup_deleting.append(hour)
        prefix = dedup_prefix(self.p, hour)
        for key in self.store.keys_with_prefix(prefix):
            self._delete(key)
        for key in [k for k in self.dirty if k.startswith(prefix)]:
            self._delete(key)

    # -- output ---------------------------------------------------------------------------

    def finish(self) -> BatchResult:
        out = self.out
        self.part.pending = list(self.pending)
        ordered = sorted(self.dirty, key=lambda k: _RANK[k[0]])
        for key in ordered:
            out.writes.append((key, _encode(self.cache[key])))
        out.writes.append((partition_key(self.p), self.part.encode()))
        for key in self.deleted:
            out.writes.append((key, None))
        out.stream_ms = self.part.stream_ms
        out.open_windows = len(self.part.open_ws)
        out.pending_corrections = len(self.pending)
        return out


def _encode(val: Any) -> bytes:
    if isinstance(val, int):
        return b"%d" % val
    encoded: bytes = val.encode()
    return encoded


def _original(rec: SourceRecord, ev: UsageEvent, single: bool) -> bytes:
    if single and rec.value is not None:
        return rec.value
    return orjson.dumps(encode_event(ev))
