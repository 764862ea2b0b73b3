"""The aggregator: one partition's batch of source records in, state writes and outputs out.

This module holds the public types and the per-event loop; the steps that run on a first
touch, a threshold crossing or a stream-time trigger are in streams.core.batch, and the
batch's state cache and write order in streams.core.cache.

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
3. Writes of one batch go out in a fixed order: expiry entries, indexes, dedup marks,
   spend, windows, the partition record, then deletions (streams.core.cache: each
   key's kind is declared where it is written). The state restored after a crash is a
   prefix of that sequence, so "window applied" implies "spend applied", "partition
   record written" implies "every update of the batch written", and no replayed event
   can see a deletion without also seeing the stream time that justified it (the
   partition record lists the deletions it started, and the next batch repeats them).
4. The runtime publishes a batch's outputs and waits for Kafka's acks before it writes
   the batch's state. A replay may therefore publish an output again, but with the same
   id and the same content, and consumers dedup by id.
5. Batching changes no output. Events are taken one at a time in offset order, as
   before; what the batch saves is state traffic: each window and spend record is read
   once (one bulk read for the batch's dedup marks, one for its windows, one for its
   spend records), updated in memory, and written once. A threshold crossing is found
   at the event that makes it, by comparing the customer's running spend with the
   next threshold; the steps driven by stream time run at the event whose time makes
   them due, with every record up to date. A new spend record writes its expiry entry
   in the same batch and before it (kind order), so an existing record implies its
   entry and it is not read again. Windows need no entries: a window start's records
   share a key prefix, which closing and expiry scan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from streams.core.batch import BatchSteps
from streams.core.billable import REASON as UNBILLABLE
from streams.core.billable import unbillable_total
from streams.core.cache import BatchCache, BulkStateReader, Kind, StateReader
from streams.core.events import UsageEvent, encode_event, validate_event
from streams.core.money import (
    NARROW_SCALE,
    VALUE_SCALE,
    TooPrecise,
    decimal_places,
    from_units,
    to_units,
    units_text,
)
from streams.core.pricing import CustomerTerms, MeterRule, Threshold
from streams.core.scan import EventTuple, scan_record
from streams.core.state import POS_SCALE, spend_key, window_key
from streams.core.windows import HOUR_MS

__all__ = [
    "Aggregator",
    "BatchResult",
    "BulkStateReader",
    "CoreConfig",
    "DeadLetter",
    "SourceRecord",
    "StateReader",
]

_YEAR_10000_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
# A dead letter keeps at most this many characters of its record's key (a valid key, a
# customer id, has at most 128).
_MAX_DEAD_LETTER_KEY = 1024
_SUM, _COUNT, _MAX = 0, 1, 2
_AGGREGATIONS = {"sum": _SUM, "count": _COUNT, "max": _MAX}
# Batches a partition runs at VALUE_SCALE after one of its batches was too precise for
# NARROW_SCALE (its state may hold such totals for a while: no narrow attempt is wasted on
# each batch meanwhile).
_WIDE_BATCHES = 100


class SourceRecord:
    """One record of usage.events, as the core needs it.

    timestamp_ms: the Kafka record timestamp (producer CreateTime): the reference "now"
        for in_future and too_old, so the verdict is the same on every replay.
    tick_ms: set for a tick record (no event): moves stream time to ``tick_ms`` minus the
        idle bound.

    Built once per Kafka record: a plain class, whose ``__init__`` is compiled (a
    dataclass's generated one stays interpreted, and a frozen one costs 3x more).
    """

    def __init__(self, offset: int, timestamp_ms: int, key: str | None, value: bytes | None,
                 tick_ms: int | None = None) -> None:
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = key
        self.value = value
        self.tick_ms = tick_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourceRecord):
            return NotImplemented
        return (self.offset, self.timestamp_ms, self.key, self.value, self.tick_ms) == (
            other.offset, other.timestamp_ms, other.key, other.value, other.tick_ms)

    def __repr__(self) -> str:
        return (f"SourceRecord(offset={self.offset}, timestamp_ms={self.timestamp_ms}, "
                f"key={self.key!r}, value={self.value!r}, tick_ms={self.tick_ms})")


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
    # Window records a batch's close sweep looks at, at most (BatchSteps.sweep); in a
    # batch with no events (tick records only, or no records: a sweep), idle_max_closes.
    batch_max_closes: int = 250
    idle_max_closes: int = 2_000


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
    # Windows the watermark has passed are left to close in the next batches (the sweep
    # reached its bound): the runtime should not wait for new records to run one.
    closing: bool = False


TermsLookup = Callable[[str], CustomerTerms | None]


def _price_scale(meters: Mapping[str, MeterRule]) -> int:
    """Most decimal places of any configured unit price (0 for whole prices)."""
    return max((decimal_places(rule.unit_price_minor) for rule in meters.values()), default=0)


class Aggregator:
    """Stateless over calls: all state is read from and written back to the store. It
    keeps only a memo of a pure function (the thresholds in force for given terms) and,
    per partition, how many batches are still to run at the wide value scale: neither
    changes any output.

    Values are summed as ints in units of ``10**-NARROW_SCALE`` when every value and
    stored total a batch meets has at most that many decimal places: small ints, which
    the compiled core adds without allocating. Otherwise the batch raises
    :class:`~streams.core.money.TooPrecise` wherever it meets the first value or total
    that does not fit, and is taken again from the start at ``VALUE_SCALE``, which holds
    every valid value. A batch is pure, so the second run produces what the first would
    have; the text written is the same at either scale."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.meter_names = tuple(config.meters)
        price_scale = self.price_scale = _price_scale(config.meters)
        # The scale a batch tries first (a test may set VALUE_SCALE: every batch wide).
        self.narrow_scale = NARROW_SCALE
        self._wide: dict[int, int] = {}
        # meter -> (aggregation code, unit price in units of 10**-price_scale, index,
        # whether its window total must fit in one engine event)
        self.meter_info: dict[str, tuple[int, int, int, bool]] = {
            name: (_AGGREGATIONS[rule.aggregation], to_units(rule.unit_price_minor, price_scale),
                   i, rule.pre_aggregated)
            for i, (name, rule) in enumerate(config.meters.items())
        }
        self.thresholds_by_terms: dict[CustomerTerms | None, tuple[Threshold, ...]] = {}

    def process(
        self,
        partition: int,
        records: Sequence[SourceRecord],
        store: StateReader,
        *,
        now_ms: int,
        terms: TermsLookup = lambda _c: None,
    ) -> BatchResult:
        wide = self._wide.get(partition)
        if wide is None:
            try:
                return self._process(partition, records, store, now_ms, terms,
                                     self.narrow_scale)
            except TooPrecise:
                wide = _WIDE_BATCHES
        if wide > 1:
            self._wide[partition] = wide - 1
        else:
            del self._wide[partition]
        return self._process(partition, records, store, now_ms, terms, VALUE_SCALE)

    def _process(self, partition: int, records: Sequence[SourceRecord], store: StateReader,
                 now_ms: int, terms: TermsLookup, value_scale: int) -> BatchResult:
        out = BatchResult()
        steps = BatchSteps(self.config, self.meter_names, value_scale,
                           value_scale + self.price_scale, partition, BatchCache(store),
                           now_ms, terms, out, self.thresholds_by_terms)
        _Run(self, steps).run(records)
        return out


# A record after the first pass: (record, events, rejections, dedup keys); events is None
# for a tick, and the whole entry is None for a record at or below the applied offset.
_Scanned = tuple[SourceRecord, Sequence[EventTuple] | None, Sequence[Any], Sequence[str]]


class _Run:
    """One batch: decode every record and read its state in bulk, then apply the events."""

    def __init__(self, agg: Aggregator, steps: BatchSteps) -> None:
        self.agg = agg
        self.steps = steps
        self.cfg = agg.config

    def run(self, records: Sequence[SourceRecord]) -> None:
        scanned = self._scan(records)
        self._apply(scanned)
        # A batch of ticks only (or of no records: a sweep) has nothing but closes to do:
        # it takes on more of them.
        ticks_only = all(item is None or item[1] is None for item in scanned)
        self._finish(self.cfg.idle_max_closes if ticks_only else self.cfg.batch_max_closes)

    def _scan(self, records: Sequence[SourceRecord]) -> list[_Scanned | None]:
        """First pass: decode, then read every dedup mark, window and spend record the
        batch may touch, in one bulk read each."""
        steps, cfg = self.steps, self.cfg
        window_ms, p, value_scale = cfg.window_ms, steps.p, steps.value_scale
        applied = steps.part.applied
        out: list[_Scanned | None] = []
        all_dkeys: list[str] = []
        windows: set[tuple[str, str, int]] = set()
        prefixes: dict[tuple[str, int], str] = {}
        for rec in records:
            if rec.offset <= applied:
                out.append(None)
                continue
            applied = rec.offset
            if rec.tick_ms is not None:
                out.append((rec, None, (), ()))
                continue
            # A record without a key is never a customer's: its events are key_mismatch.
            # (Skipping the key check would let them land on another customer's
            # partition, where a second window of theirs would emit summaries with the
            # same ids.)
            customer = "" if rec.key is None else rec.key
            events, rejections = scan_record(rec.value, customer, value_scale)
            if not events:
                dkeys: Sequence[str] = ()
            else:
                # Dedup keys (dedup_key's layout): the prefix of a customer's hour is built
                # once per batch, and a packed record's events mostly share its first
                # event's hour.
                ts = events[0][4]
                h0 = ts - ts % HOUR_MS
                prefix = prefixes.get((customer, h0))
                if prefix is None:
                    prefix = prefixes[(customer, h0)] = (
                        f"D|{p}|{h0}|{len(customer)}:{customer}|")
                if len(events) == 1:  # a single event: no comprehension
                    dkeys = (prefix + events[0][1],)
                    windows.add((customer, events[0][2], ts - ts % window_ms))
                else:
                    h1 = h0 + HOUR_MS
                    dkeys = [prefix + ev[1] if h0 <= ev[4] < h1 else
                             f"D|{p}|{ev[4] - ev[4] % HOUR_MS}|{len(customer)}:{customer}|{ev[1]}"
                             for ev in events]
                    windows.update({(customer, ev[2], ev[4] - ev[4] % window_ms)
                                    for ev in events})
            all_dkeys.extend(dkeys)
            out.append((rec, events, rejections, dkeys))
        cache = steps.cache
        cache.prefetch_sparse(all_dkeys, int)
        # Each window's key is built once, here, for the bulk read and for its first touch.
        wkeys = steps.window_keys
        for c, m, ws in windows:
            wkeys[(c, m, ws)] = window_key(p, ws, c, m)
        cache.prefetch(wkeys.values(), steps.window_decode)
        # (No billing period exists past year 9999: such events are in_future anyway.)
        cache.prefetch({spend_key(c, steps.period(ws)[0]) for c, _m, ws in windows
                        if ws < _YEAR_10000_MS}, steps.spend_decode)
        return out

    def _dead(self, rec: SourceRecord, reason: str, detail: str, index: int | None,
              original: bytes) -> None:
        out = self.steps.out
        out.outcomes[f"invalid:{reason}"] += 1
        key = rec.key
        if key is not None and len(key) > _MAX_DEAD_LETTER_KEY:
            key = key[:_MAX_DEAD_LETTER_KEY]  # so that the dead letter fits in a message
        out.dead_letters.append(DeadLetter(key, reason, detail, rec.offset, index, original))

    def _dead_event(self, rec: SourceRecord, ev: EventTuple, reason: str, detail: str) -> None:
        single = rec.value is not None and rec.value.lstrip()[:1] != b"["
        if single and rec.value is not None:
            original = rec.value
        elif ev[5] is None:  # what encode_event gives for an event without attributes
            original = orjson.dumps({"id": ev[1], "customer": rec.key, "meter": ev[2],
                                     "value": units_text(ev[3], self.steps.value_scale),
                                     "timestamp": ev[4]})
        else:
            parsed = validate_event(ev[5], rec.key)  # accepted once, so accepted again
            assert isinstance(parsed, UsageEvent)
            original = orjson.dumps(encode_event(parsed))
        self._dead(rec, reason, detail, None if single else ev[0], original)

    def _apply(self, scanned: list[_Scanned | None]) -> None:
        """Second pass: every record and event in offset order (the hot loop)."""
        steps, cfg = self.steps, self.cfg
        part = steps.part
        meter_info = self.agg.meter_info
        window_ms, grace_ms, max_age_ms = cfg.window_ms, cfg.grace_ms, cfg.max_age_ms
        max_future_ms, idle_bound_ms = cfg.max_future_ms, cfg.idle_bound_ms
        dedup_span = HOUR_MS + cfg.dedup_horizon_ms
        cache = steps.cache
        values, deleted = cache.values, cache.deleted
        new_marks = cache.dirty(Kind.DEDUP)
        windows, dedup_hours = steps.windows, steps.dedup_hours
        value_scale = steps.value_scale
        one_unit = 10**value_scale
        accepted = late = duplicate = replayed = 0
        last_ms = steps.out.last_event_ms
        # Only this loop and steps.advance move stream time: it stays in a local between.
        stream_ms = part.stream_ms
        for item in scanned:
            if item is None:
                replayed += 1
                continue
            rec, events, rejections, dkeys = item
            if events is None:
                assert rec.tick_ms is not None
                # A tick is written with the wall time as header and as record timestamp,
                # the latter a moment later. A forged tick header cannot move stream time
                # past its record's timestamp, which the broker bounds
                # (log.message.timestamp.after.max.ms).
                steps.advance(min(rec.tick_ms, rec.timestamp_ms) - idle_bound_ms)
                stream_ms = part.stream_ms
                continue
            for rej in rejections:
                self._dead(rec, rej.reason, rej.detail, rej.index, rej.original)
            if not events:
                continue
            future_limit = rec.timestamp_ms + max_future_ms
            if future_limit >= _YEAR_10000_MS:
                future_limit = _YEAR_10000_MS - 1
            old_limit = rec.timestamp_ms - max_age_ms
            customer = "" if rec.key is None else rec.key
            base_pos = rec.offset * POS_SCALE
            # (dkeys has one key per event: enumerate costs a third of zip(strict=True).)
            for i, ev in enumerate(events):
                dkey = dkeys[i]
                index, event_id, meter, q, ts, _element = ev
                info = meter_info.get(meter)
                if info is None:
                    self._dead_event(rec, ev, "unknown_meter",
                                     f"meter {meter[:60]!r} is not configured")
                    continue
                ws = ts - ts % window_ms
                # Past year 9999 no billing period exists; only a record timestamp that
                # far ahead (a broker without log.message.timestamp.after.max.ms) lets one
                # here.
                if ts > future_limit:
                    self._dead_event(rec, ev, "in_future", "event time is more than the "
                                     "allowed skew ahead of the record's produce time")
                    continue
                wm = stream_ms - grace_ms
                # Also too old once its window's state may have expired (see
                # BatchSteps.expire_windows).
                if ts < old_limit or ws + window_ms + max_age_ms <= wm:
                    self._dead_event(rec, ev, "too_old",
                                     "event time is older than the billing engine accepts "
                                     "once its window closes")
                    continue
                pos = base_pos + index
                hour = ts - ts % HOUR_MS
                # Beyond the dedup horizon its marks are gone, as Stripe's would be: new.
                if hour + dedup_span > wm:
                    first = values.get(dkey)  # (prefetch_sparse)
                    if first is None:
                        values[dkey] = pos
                        new_marks[dkey] = None
                        if deleted:
                            deleted.pop(dkey, None)
                        if hour not in dedup_hours:
                            steps.register_dedup_hour(hour)
                    elif first != pos:  # the original being replayed has its own position
                        duplicate += 1
                        continue
                entry = windows.get((customer, meter, ws))
                if entry is None:
                    entry = steps.touch_window(customer, meter, ws)
                w, sa, wkey = entry
                if pos <= w.applied:
                    # Applied before a crash; the spend record was written before it, so
                    # it holds too. Stream time is a function of the log: the event moved
                    # it the first time, so it must move it again, or a window it closed
                    # would close later, with more events, under the same summary id.
                    replayed += 1
                    if w.closed and (w.emitted_seq < 0 or w.value_units != w.emitted_units):
                        steps.mark_pending(wkey, w)
                    steps.advance(ts)
                    stream_ms = part.stream_ms
                    continue
                aggregation, price, meter_index, pre_aggregated = info
                old = w.value_units
                if aggregation == _SUM:
                    new = old + q
                elif aggregation == _COUNT:
                    q = one_unit
                    new = old + q
                else:
                    new = (q if q > old else old) if w.count else q
                    q = new - old
                if pre_aggregated:
                    # Whatever the worker accepts, the sink must be able to deliver: a
                    # total that one engine event cannot carry is refused here.
                    detail = unbillable_total(from_units(new, value_scale),
                                              pre_aggregated=True)
                    if detail is not None:
                        self._dead_event(rec, ev, UNBILLABLE, detail)
                        continue
                if not w.closed and ws + window_ms <= wm:
                    # Due but not swept yet: it closes now, as it stood at its end, so that
                    # whichever batch closes it, its final is the same.
                    steps.close_window(wkey, w)
                w.value_units = new
                w.count += 1
                w.applied = pos
                if w.closed:
                    late += 1
                    steps.mark_pending(wkey, w)
                else:
                    accepted += 1
                if pos > sa.guard:
                    qty = sa.qty
                    had = qty[meter_index]
                    qty[meter_index] = q if had is None else had + q
                    sa.units += q * price
                    sa.last_pos = pos
                    if ts > sa.last_ms:
                        sa.last_ms = ts
                    if sa.units >= sa.need:
                        steps.cross(sa, ts, event_id)
                if last_ms is None or ts > last_ms:
                    last_ms = ts
                if ts > stream_ms:
                    before = stream_ms
                    stream_ms = part.stream_ms = ts
                    if ts >= steps.trigger_ms:
                        steps.run_due(before)
        steps.out.last_event_ms = last_ms
        # (Nothing reads the applied offset before the batch ends.)
        part.applied = next((item[0].offset for item in reversed(scanned) if item is not None),
                            part.applied)
        outcomes = steps.out.outcomes
        for name, n in (("accepted", accepted), ("late", late), ("duplicate", duplicate),
                        ("replayed", replayed)):
            if n:
                outcomes[name] += n

    def _finish(self, closes: int) -> None:
        steps = self.steps
        out, part = steps.out, steps.part
        steps.sweep(closes)
        steps.flush_spend()
        part.pending = list(steps.pending)
        out.writes = steps.cache.writes((f"P|{steps.p}", part.encode()))
        for name, n in (("summary:final", steps.finals), ("summary:correction",
                                                          steps.corrections)):
            if n:
                out.outcomes[name] += n
        out.stream_ms = part.stream_ms
        out.open_windows = len(part.open_ws)
        out.pending_corrections = len(steps.pending)
        out.closing = steps.due()
