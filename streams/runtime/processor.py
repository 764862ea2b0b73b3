"""The batch step of the worker: Faust events in, core call, outputs published, state written.

Order of one partition's batch (why it is safe: docs/exactly-once.md):

1. Convert Faust events to :class:`~streams.core.aggregate.SourceRecord` (tick records are
   recognised by their header).
2. Run the pure core against a read view of the partition's RocksDB database.
3. Publish summaries, alerts and dead letters of every partition in the batch, and
   wait until Kafka acknowledged every one of them (acks=all). A crash after this
   point re-publishes the same ids.
4. Write each partition's state in the order the core returned it (partition record
   after the updates, deletions last): one RocksDB write batch, and the same records
   in the same order to the partition of the changelog (:mod:`streams.runtime.state_store`).
5. Faust acks the events when this returns; it commits their offsets only after flushing
   the producer, so committed offsets never run ahead of the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from streams import metrics
from streams.core.aggregate import Aggregator, BatchResult, DeadLetter, SourceRecord
from streams.core.events import MAX_TIMESTAMP_MS
from streams.core.pricing import CustomerTerms, terms_from_record
from streams.core.state import PartitionRec, partition_key
from streams.runtime.gaps import Fetch, fill_gaps
from streams.runtime.state_store import StateStore

__all__ = ["TICK_HEADER", "BatchProcessor", "dead_letter_envelope", "source_record_from_kafka"]

log = logging.getLogger(__name__)

TICK_HEADER = "meterstream-tick"


def dead_letter_envelope(
    dl: DeadLetter, *, topic: str, partition: int, stage: str, now_ms: int
) -> dict[str, Any]:
    """A dead-letter envelope v1 (schemas/dead_letter.v1.json)."""
    import base64

    return {
        "schema": "dead_letter.v1",
        "reason": dl.reason,
        "detail": dl.detail,
        "source": {"topic": topic, "partition": partition, "offset": dl.offset,
                   "key": dl.key, "index": dl.index},
        "original_b64": base64.b64encode(dl.original).decode(),
        "failed_at_ms": now_ms,
        "stage": stage,
    }


def _tick_of(headers: Any) -> int | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name == TICK_HEADER:
            # Only the worker writes ticks, but anyone who may produce to the topic can set
            # the header: one that is not epoch ms makes the record an ordinary one, which
            # the core then judges (an empty value is a dead letter, invalid_json).
            try:
                tick = int(value)
            except (TypeError, ValueError):
                return None
            return tick if 0 <= tick <= MAX_TIMESTAMP_MS else None
    return None


def _source_record(msg: Any) -> SourceRecord:
    """From a Faust message (timestamp in seconds)."""
    key = msg.key
    return SourceRecord(
        offset=msg.offset,
        timestamp_ms=round(msg.timestamp * 1000),
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=msg.value,
        tick_ms=_tick_of(msg.headers),
    )


def source_record_from_kafka(msg: Any) -> SourceRecord:
    """From an aiokafka ConsumerRecord (timestamp in ms)."""
    key = msg.key
    return SourceRecord(
        offset=msg.offset,
        timestamp_ms=msg.timestamp,
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=msg.value,
        tick_ms=_tick_of(msg.headers),
    )


class BatchProcessor:
    """Runs the core for each partition of a batch and applies its results."""

    def __init__(
        self,
        *,
        core: Aggregator,
        store: StateStore,
        customers: Any,
        topics: Any,
        events_topic_name: str,
        clock: Callable[[], float] = time.time,
        highwater: Callable[[Any], int | None] | None = None,
        gap_fetch: Fetch | None = None,
        mark_done: Callable[[Any, int, int], Awaitable[None]] | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.customers = customers
        self.topics = topics  # .summaries, .alerts, .dlq: Faust topics
        self.events_topic_name = events_topic_name
        self.clock = clock
        # The consumer's high watermark of a Faust TP (next offset to be written), or None.
        self.highwater = highwater
        # Reads skipped offset ranges back from the broker (streams.runtime.gaps).
        self.gap_fetch = gap_fetch
        # Tells the consumer that offsets first..last of a TP are done (Faust's ack gaps).
        self.mark_done = mark_done
        self.last_record_wall: dict[int, float] = {}
        self.busy: dict[int, bool] = {}
        self._terms_cache: dict[bytes, CustomerTerms | None] = {}

    def terms(self, customer: str) -> CustomerTerms | None:
        raw = self.customers.get(customer.encode()) if self.customers is not None else None
        if raw is None:
            return None
        try:
            return self._terms_cache[raw]
        except KeyError:
            try:
                record = orjson.loads(raw)
                terms = terms_from_record(record) if isinstance(record, dict) else None
            except (orjson.JSONDecodeError, ArithmeticError, ValueError):
                log.warning("customer record of %r is not valid JSON; using defaults", customer)
                terms = None
            if len(self._terms_cache) > 100_000:
                self._terms_cache.clear()
            self._terms_cache[raw] = terms
            return terms

    async def process(self, events: Sequence[Any]) -> None:
        """Process one batch: core per partition, publish everything, then write state.

        The outputs of every partition are published first and awaited together (one ack
        wait per batch, not per partition); only then is any state written.
        """
        started = time.perf_counter()
        now = self.clock()
        now_ms = int(now * 1000)
        by_partition: dict[int, list[Any]] = {}
        for ev in events:
            by_partition.setdefault(ev.message.partition, []).append(ev)
        results: list[tuple[int, Any, BatchResult]] = []
        pending: list[Any] = []
        for partition, evs in by_partition.items():
            self.last_record_wall[partition] = now
            records = [_source_record(ev.message) for ev in evs]
            view = self.store.view(partition)
            if self.gap_fetch is not None:
                raw = view.get(partition_key(partition))
                applied = PartitionRec.decode(raw).applied if raw else -1
                records, holes, filled = await fill_gaps(partition, records, applied,
                                                         self.gap_fetch)
                if filled:
                    metrics.GAP_RECORDS.labels(str(partition)).inc(filled)
                for first, last in holes:
                    if self.mark_done is not None:
                        await self.mark_done(evs[0].message.tp, first, last)
            result = self.core.process(
                partition, records, view, now_ms=now_ms, terms=self.terms,
            )
            pending += await self._publish(partition, result, now_ms)
            results.append((partition, evs[-1], result))
        if pending:
            await asyncio.gather(*pending)
        for partition, last_event, result in results:
            await self.store.write(partition, result.writes)
            # A partition with open windows or due corrections needs ticks while idle.
            self.busy[partition] = result.open_windows > 0 or result.pending_corrections > 0
            self._observe(partition, result, now)
            self._observe_lag(partition, last_event)
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        metrics.BATCH_EVENTS.observe(len(events))

    async def _publish(self, partition: int, result: BatchResult, now_ms: int) -> list[Any]:
        """Hand the outputs to the producer; return the futures of their acks."""
        pending = []
        for s in result.summaries:
            pending.append(await self.topics.summaries.send(
                key=s["customer"].encode(), value=orjson.dumps(s)))
        for a in result.alerts:
            pending.append(await self.topics.alerts.send(
                key=a["customer"].encode(), value=orjson.dumps(a)))
        for dl in result.dead_letters:
            envelope = dead_letter_envelope(
                dl, topic=self.events_topic_name, partition=partition, stage="aggregator",
                now_ms=now_ms)
            pending.append(await self.topics.dlq.send(
                key=dl.key.encode() if dl.key is not None else None,
                value=orjson.dumps(envelope),
                headers=[("reason", dl.reason.encode()),
                         ("source", f"{self.events_topic_name}/{partition}/{dl.offset}".encode())],
            ))
        return pending

    def _observe(self, partition: int, result: BatchResult, now: float) -> None:
        metrics.STATE_WRITES.inc(len(result.writes))
        for outcome, n in result.outcomes.items():
            if outcome.startswith("invalid:"):
                reason = outcome.split(":", 1)[1]
                metrics.EVENTS.labels("invalid", reason).inc(n)
                metrics.DLQ.labels("events", reason).inc(n)
            elif outcome.startswith("summary:"):
                metrics.SUMMARIES.labels(outcome.split(":", 1)[1]).inc(n)
            else:
                metrics.EVENTS.labels(outcome, "").inc(n)
        for a in result.alerts:
            threshold = a["threshold"]
            assert isinstance(threshold, dict)
            metrics.ALERTS.labels(str(threshold["kind"])).inc()
        p = str(partition)
        if result.last_event_ms is not None:
            metrics.EVENT_TIME_LAG.labels(p).set(max(0.0, now - result.last_event_ms / 1000))
        if result.stream_ms:
            metrics.WATERMARK.labels(p).set((result.stream_ms - self.core.config.grace_ms) / 1000)
        metrics.OPEN_WINDOWS.labels(p).set(result.open_windows)

    def _observe_lag(self, partition: int, last_event: Any) -> None:
        """Consumer lag: high watermark minus the next offset this worker will process."""
        if self.highwater is None:
            return
        try:
            high = self.highwater(last_event.message.tp)
        except Exception:  # not assigned any more (rebalance) or the consumer is stopping
            return
        if high is not None:
            lag = max(0, high - (last_event.message.offset + 1))
            metrics.CONSUMER_LAG.labels(str(partition)).set(lag)
