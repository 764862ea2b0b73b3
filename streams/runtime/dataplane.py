"""The worker's data plane: batches from Kafka, through the core, committed per partition.

One aiokafka consumer in the worker group (static membership: ``group.instance.id`` is the
worker's instance id) fetches the events topic in batches (``getmany``). Each round hands
every partition's records to :func:`~streams.runtime.checkpoint.commit_batch`, which runs
the core and commits the partition's outputs, changelog and input offset in one Kafka
transaction, then its local RocksDB state. Partitions of a round commit concurrently;
a partition's next batch starts after its previous one committed.

Partition lifecycle (all under one lock, so a rebalance waits for the round in progress):

- **assigned**: open the partition's local database (kept on disk across restarts), start
  its transactional producer (this fences any older owner, and aborts what it left open),
  restore the changelog tail past the database's offset, then seek the consumer to the
  state's position (the last offset applied + 1). The state, not the group's committed
  offset, says where to read from; both move in the same transaction.
- **revoked**: stop the producer (no transaction is open between rounds); the database
  stays on disk for the next time.
- **fenced** (a commit raised :class:`~streams.errors.PartitionFencedError`): a newer owner
  holds the partition. The batch is discarded with nothing written, the partition is
  paused, and this worker waits for the group to tell it what it owns now.
- **failed otherwise** (broker trouble, a timed-out commit): the partition's producer is
  restarted (which aborts the open transaction) and the consumer is sent back to the
  state's position: the batch is read and processed again, with the same result.

Ticks: an idle partition gets a tick record now and then (:meth:`DataPlane.tick`), so its
windows close on the log's time, the same on every replay.

Sweeps: a batch emits the finals of at most ``AGGREGATOR__BATCH_MAX_CLOSES`` of the windows
the watermark has passed (streams.core.batch, ``BatchSteps.sweep``). A partition left with
more and no records to process gets a sweep batch: no input records, the next finals, its
own transaction, the input position unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams.config import Settings
from streams.core import compiled as core_compiled
from streams.core.aggregate import Aggregator, SourceRecord
from streams.core.state import PartitionRec, partition_key
from streams.errors import MeterstreamError, PartitionFencedError
from streams.kafka.client import connection_options
from streams.observability import metrics
from streams.runtime.assignor import RoutingAssignor
from streams.runtime.checkpoint import BatchTopics, commit_batch
from streams.runtime.customers import CustomersTable
from streams.runtime.gaps import BrokerReader, fill_gaps
from streams.runtime.kafka_txn import PartitionProducer, quiet_fenced_futures
from streams.runtime.local_state import MemoryBudget, PartitionState
from streams.runtime.observe import observe_batch
from streams.runtime.records import TICK_HEADER, source_record_from_kafka
from streams.runtime.restore import restore
from streams.util.backoff import Backoff

__all__ = ["EXIT_DATA_PLANE_FAILED", "DataPlane", "fetched_bytes", "settle_collector",
           "split_round"]

log = logging.getLogger(__name__)

# Exit status when the data plane cannot go on (EX_SOFTWARE): local state is consistent at
# every instant, so the supervisor's restart resumes from the committed position.
EXIT_DATA_PLANE_FAILED = 70
# Taking a partition again while the broker is away: 0.5, 1, 2, 4, 5, 5... s (one worker
# retrying alone, so no jitter).
_RESET_BACKOFF = Backoff(base_s=0.5, cap_s=5.0, jitter=False)
_GC_GEN0_THRESHOLD = 50_000
# aiokafka fetches a partition again only once its buffer is drained, so what getmany
# returns after a round was fetched when that round began: records that arrived during the
# round would wait for the whole next round too. A second, short poll right after takes
# what the fetch sent when the buffer drained has brought back (one round trip). A rebalance
# between the two polls may join records from before and after a seek; the core skips every
# record at or below a partition's applied offset, so the joined batch applies each once.
_FRESH_POLL_MS = 5


def settle_collector() -> None:
    """The worker's garbage-collector settings, applied once its start-up objects exist.

    The start-up objects (modules, settings, clients) live as long as the process: moved
    out of the collector's sight (``gc.freeze``), and young collections made rarer, the
    cyclic GC stops rescanning them on every burst of per-batch allocations. The core
    benchmark runs the core under the same settings.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, 20, 20)


@dataclass(slots=True)
class _Owned:
    partition: int
    tp: TopicPartition
    state: PartitionState
    producer: PartitionProducer
    next_offset: int  # the next offset to process (the state's applied + 1)
    fenced: bool = False
    busy: bool = True  # open windows or corrections due: needs ticks while idle
    last_record_wall: float = 0.0
    closing: bool = False  # its last batch left windows to close (a sweep is due)


def fetched_bytes(fetched: dict[TopicPartition, list[Any]]) -> int:
    """The size of a fetch's record values."""
    return sum(m.serialized_value_size for msgs in fetched.values() for m in msgs)


def split_round(fetched: dict[TopicPartition, list[Any]], max_bytes: int, total: int
                ) -> list[dict[TopicPartition, list[Any]]]:
    """A fetch of ``total`` bytes (:func:`fetched_bytes`) in parts of about ``max_bytes``
    of record values at most, each partition's records in order and spread over the parts
    as evenly as their sizes allow: each part takes up to an equal share of ``max_bytes``
    from every partition with records left, and at least one record from each. One part
    when the whole fetch fits."""
    if total <= max_bytes:
        return [fetched]
    cursors = {tp: 0 for tp, msgs in fetched.items() if msgs}
    parts: list[dict[TopicPartition, list[Any]]] = []
    while cursors:
        share = max_bytes // len(cursors)
        part: dict[TopicPartition, list[Any]] = {}
        for tp, start in list(cursors.items()):
            msgs = fetched[tp]
            end, size = start + 1, msgs[start].serialized_value_size
            while end < len(msgs) and size + msgs[end].serialized_value_size <= share:
                size += msgs[end].serialized_value_size
                end += 1
            part[tp] = msgs[start:end]
            if end < len(msgs):
                cursors[tp] = end
            else:
                del cursors[tp]
        parts.append(part)
    return parts


def _applied(state: PartitionState, partition: int) -> int:
    raw = state.view.get(partition_key(partition))
    return PartitionRec.decode(raw).applied if raw else -1


class DataPlane:
    """Consume, process and commit the events topic; serve the state it owns."""

    def __init__(self, settings: Settings, core: Aggregator,
                 clock: Callable[[], float] = time.time) -> None:
        w, t, a = settings.worker, settings.topics, settings.aggregator
        from streams.kafka.admin import changelog_topic

        self.settings = settings
        self.core = core
        self.clock = clock
        self.topics = BatchTopics(events=t.events, changelog=changelog_topic(settings),
                                  summaries=t.summaries, alerts=t.alerts, dlq=t.events_dlq,
                                  group_id=w.app_id)
        self.options = connection_options(settings.kafka)
        self.state_root = Path(w.state_dir) / "partitions"
        self.budget = MemoryBudget(w.rocksdb_memory_mb)
        self.assignor = RoutingAssignor(w.effective_instance_id, w.effective_advertised_url)
        self.customers = CustomersTable(t.customers, self.options)
        self.owned: dict[int, _Owned] = {}
        self._states: dict[int, PartitionState] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._ticks: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._gaps = BrokerReader(t.events, self.options, source_record_from_kafka)
        self._stopping = False
        self._closing: set[asyncio.Task[None]] = set()
        self.events_partitions = t.partitions  # the topic's real count, once started
        self.assigned_once = False
        self.rebalancing = True
        self._batch_max_events = a.batch_max_events
        self._batch_max_bytes = a.batch_max_bytes
        self._round_records = a.batch_max_events  # what a round asks for (see _round)
        self._batch_max_ms = a.batch_max_ms

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        from streams.kafka.admin import create_topics

        w = self.settings.worker
        quiet_fenced_futures(asyncio.get_running_loop())
        result = await create_topics(self.settings, only={self.topics.changelog})
        problem = result.get(self.topics.changelog, "")
        if problem not in ("created", "exists"):
            log.warning("state changelog %s: %s", self.topics.changelog, problem)
        self._ticks = AIOKafkaProducer(**self.options, enable_idempotence=True, acks="all",
                                       client_id=f"{w.app_id}-ticks")
        await self._ticks.start()
        self.events_partitions = await self._partition_count(self.topics.events, "EVENTS")
        changelog = await self._partition_count(self.topics.changelog, "")
        if changelog < self.events_partitions:
            raise MeterstreamError(
                f"the state changelog {self.topics.changelog!r} has {changelog} partitions "
                f"and the events topic {self.events_partitions}: they must be equal")
        customers = await self._partition_count(self.settings.topics.customers, "CUSTOMERS")
        await self.customers.start(set(range(customers)))
        session_ms = int(w.session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            **self.options,
            group_id=w.app_id,
            group_instance_id=w.effective_instance_id,
            client_id=f"{w.app_id}-{w.effective_instance_id}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 3),
            max_poll_interval_ms=600_000,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe([self.topics.events], listener=_Listener(self))
        await self._consumer.start()
        settle_collector()
        self._task = asyncio.create_task(self._run(), name="data-plane")
        self._task.add_done_callback(_fail_stop_on_error)
        log.info("data plane started: group %s, instance %s, events %s; the aggregation "
                 "core runs %s", w.app_id, w.effective_instance_id, self.topics.events,
                 "compiled (mypyc)" if core_compiled() else "from its Python source")

    async def _partition_count(self, topic: str, setting: str) -> int:
        assert self._ticks is not None
        try:
            found = await asyncio.wait_for(self._ticks.partitions_for(topic), 30.0)
        except (TimeoutError, KafkaError) as exc:
            where = f" (TOPICS__{setting})" if setting else ""
            raise MeterstreamError(
                f"topic {topic!r}{where} is not available: {exc!r}; `meterstream topics "
                "create` makes the topics") from exc
        return len(found)

    async def stop(self) -> None:
        """Finish the round in progress, then stop; static membership keeps the partitions
        reserved for this instance id until its session times out."""
        self._stopping = True
        async with self._lock:
            if self._task is not None:
                self._task.remove_done_callback(_fail_stop_on_error)
                self._task.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for owned in list(self.owned.values()):
            await _quietly(owned.producer.stop())
        self.owned.clear()
        if self._ticks is not None:
            await self._ticks.stop()
        await self.customers.stop()
        await self._gaps.close()
        for state in self._states.values():
            state.close()
        self._states.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def ready(self) -> bool:
        return self.assigned_once and not self.rebalancing and not self._stopping

    def lags(self) -> dict[int, int | None]:
        """Consumer lag of each owned partition (None: not known before its first fetch)."""
        consumer = self._consumer
        out: dict[int, int | None] = {}
        for p, owned in self.owned.items():
            high = consumer.highwater(owned.tp) if consumer is not None else None
            out[p] = None if high is None else max(0, high - owned.next_offset)
        return out

    def caught_up(self) -> bool:
        """Ready, and every owned partition's lag within WORKER__CAUGHT_UP_MAX_LAG."""
        ok = self.ready and metrics.caught_up(self.lags(),
                                              self.settings.worker.caught_up_max_lag)
        metrics.CAUGHT_UP.set(1 if ok else 0)
        return ok

    def rocksdb_memory(self) -> dict[str, int]:
        """RocksDB's memory now, by kind, for ``meterstream_rocksdb_memory_bytes``."""
        memtables = readers = 0
        for state in self._states.values():
            m, r = state.memory_bytes()
            memtables += m
            readers += r
        return {"budget": self.budget.memory_bytes, "cache": self.budget.cache_bytes(),
                "memtables": memtables, "table_readers": readers}

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            # (Not waiting for records while a partition has windows left to close.)
            sweeping = bool(self._sweeps_due())
            fetched = await consumer.getmany(timeout_ms=0 if sweeping else self._batch_max_ms,
                                             max_records=self._round_records)
            if fetched:
                room = self._round_records - sum(len(m) for m in fetched.values())
                if room > 0:
                    fresh = await consumer.getmany(timeout_ms=_FRESH_POLL_MS, max_records=room)
                    for tp, msgs in fresh.items():
                        fetched.setdefault(tp, []).extend(msgs)
            if not fetched and not sweeping:
                continue
            async with self._lock:
                if self.stopping:
                    return
                if fetched:
                    await self._round(fetched)
                await self._sweep(fetched)

    async def _round(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Process a fetch in parts of at most ``AGGREGATOR__BATCH_MAX_BYTES``. A partition
        goes on to its next part only if its previous one committed: a failed batch has
        sent the consumer back to its first record, so the rest come again; a fenced or
        revoked partition is done.

        The next round asks for as many records as fill the byte bound at this fetch's
        average size (at most ``AGGREGATOR__BATCH_MAX_EVENTS``), so that a fetch of large
        records (packed arrays) is not held whole while its parts are processed.
        """
        total = fetched_bytes(fetched)
        records = sum(map(len, fetched.values()))
        self._round_records = max(1, min(self._batch_max_events,
                                         self._batch_max_bytes * records // max(total, 1)))
        given: dict[TopicPartition, int] = {}  # the last offset each partition was given
        for part in split_round(fetched, self._batch_max_bytes, total):
            go = {tp: msgs for tp, msgs in part.items()
                  if tp not in given or self._committed_through(tp, given[tp])}
            await self._part(go)
            for tp, msgs in go.items():
                given[tp] = msgs[-1].offset

    def _committed_through(self, tp: TopicPartition, offset: int) -> bool:
        owned = self.owned.get(tp.partition)
        return owned is not None and not owned.fenced and owned.next_offset == offset + 1

    async def _part(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        now = self.clock()
        jobs = []
        count = 0
        for tp, msgs in fetched.items():
            owned = self.owned.get(tp.partition)
            if owned is None or owned.fenced or not msgs:
                continue
            owned.last_record_wall = now
            count += len(msgs)
            jobs.append(self._batch(owned, [source_record_from_kafka(m) for m in msgs], now))
        if jobs:
            await asyncio.gather(*jobs)
            metrics.BATCH_DURATION.observe(time.perf_counter() - started)
            metrics.BATCH_EVENTS.observe(count)

    async def _batch(self, owned: _Owned, records: list[SourceRecord], now: float) -> None:
        """Process and commit a partition's records, or with none, a sweep: the finals of
        windows the watermark has passed that earlier batches left (their bound,
        ``AGGREGATOR__BATCH_MAX_CLOSES``), with the input position unchanged."""
        p = owned.partition
        try:
            if records and records[0].offset > owned.next_offset:
                records, _holes, filled = await fill_gaps(p, records, owned.next_offset - 1,
                                                          self._gaps.fetch)
                if filled:
                    metrics.GAP_RECORDS.labels(str(p)).inc(filled)
            result = await commit_batch(
                partition=p, records=records, core=self.core, state=owned.state,
                txn=owned.producer, topics=self.topics, now_ms=int(now * 1000),
                terms=self.customers.terms)
        except PartitionFencedError:
            self._fenced(owned)
            return
        except Exception as exc:  # any other failure: redo from the state
            what = (f"batch at offsets {records[0].offset}..{records[-1].offset}" if records
                    else "sweep of due windows")
            log.warning("partition %d: %s failed (%r); restarting its producer and reading "
                        "it again", p, what, exc)
            metrics.TXN_RESETS.labels(str(p)).inc()
            await self._reset(owned)
            return
        if records:
            owned.next_offset = records[-1].offset + 1
        owned.busy = result.open_windows > 0 or result.pending_corrections > 0
        owned.closing = result.closing
        observe_batch(p, result, now_s=now, grace_ms=self.core.config.grace_ms)
        consumer = self._consumer
        high = consumer.highwater(owned.tp) if consumer is not None else None
        if high is not None:
            metrics.CONSUMER_LAG.labels(str(p)).set(max(0, high - owned.next_offset))

    def _sweeps_due(self, fetched: dict[TopicPartition, list[Any]] | None = None
                    ) -> list[_Owned]:
        """Owned partitions that have windows left to close, no records in ``fetched`` and
        none waiting on the broker (a partition with records sweeps in its next batch)."""
        consumer = self._consumer
        due = []
        for owned in self.owned.values():
            if not owned.closing or owned.fenced or (fetched and fetched.get(owned.tp)):
                continue
            high = consumer.highwater(owned.tp) if consumer is not None else None
            if high is None or high <= owned.next_offset:
                due.append(owned)
        return due

    async def _sweep(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """A sweep batch for each partition :meth:`_sweeps_due` names."""
        due = self._sweeps_due(fetched)
        if due:
            now = self.clock()
            await asyncio.gather(*(self._batch(owned, [], now) for owned in due))

    def _fenced(self, owned: _Owned) -> None:
        log.warning("partition %d: another worker owns it now (this worker's producer was "
                    "fenced); the batch is dropped and nothing is written for it",
                    owned.partition)
        metrics.FENCED.labels(str(owned.partition)).inc()
        owned.fenced = True
        if self._consumer is not None:
            self._consumer.pause(owned.tp)
        # Stopped in the background: a fenced producer may still be failing its batches.
        closing = asyncio.create_task(_quietly(owned.producer.stop()))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _reset(self, owned: _Owned) -> None:
        """Take the partition again after a failed batch: a new producer (it aborts the open
        transaction, and fences whoever else may have taken the partition meanwhile), the
        changelog tail restored (anything such a worker committed is in it), then the
        consumer sent back to the state's position. Retries with backoff while the broker
        is unreachable."""
        await _quietly(owned.producer.stop())
        attempt = 0
        while not self._stopping:
            try:
                await self._take([owned.partition])
                return
            except PartitionFencedError:
                self._fenced(owned)
                return
            except Exception as exc:
                delay = _RESET_BACKOFF.delay_s(attempt)
                log.warning("partition %d: taking it again failed (%r); next try in %.1f s",
                            owned.partition, exc, delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _take(self, partitions: list[int]) -> int:
        """Own ``partitions``: fence older owners, restore, seek. Returns records restored.

        Fencing comes first: it aborts their open transactions, so the changelog's end is
        final before the restore reads up to it.
        """
        producers = await asyncio.gather(*(self._start_producer(p) for p in partitions),
                                         return_exceptions=True)
        failed = [r for r in producers if isinstance(r, BaseException)]
        for r in producers:
            if isinstance(r, PartitionProducer):
                old = self.owned.get(r.partition)
                if old is not None:
                    await _quietly(old.producer.stop())  # idempotent; a retry replaces it
                    old.producer = r
                else:
                    self.owned[r.partition] = _Owned(
                        r.partition, TopicPartition(self.topics.events, r.partition),
                        self._states[r.partition], r, 0, last_record_wall=self.clock())
        if failed:
            raise failed[0]
        counts = await restore({p: self._states[p] for p in partitions},
                               topic=self.topics.changelog, options=self.options)
        consumer = self._consumer
        assert consumer is not None
        for p in partitions:
            owned = self.owned[p]
            owned.fenced = False
            owned.closing = True  # closes left by an earlier owner go on at once
            owned.next_offset = _applied(owned.state, p) + 1
            consumer.seek(owned.tp, owned.next_offset)
            consumer.resume(owned.tp)
            if counts[p]:
                metrics.RESTORED_RECORDS.labels(str(p)).inc(counts[p])
        return sum(counts.values())

    async def _start_producer(self, partition: int) -> PartitionProducer:
        return await PartitionProducer.start(
            partition, app_id=self.settings.worker.app_id, events_topic=self.topics.events,
            options=self.options, compression=self.settings.worker.compression)

    # -- rebalances --------------------------------------------------------------------

    async def revoked(self, tps: set[TopicPartition]) -> None:
        async with self._lock:
            self.rebalancing = True
            for tp in tps:
                owned = self.owned.pop(tp.partition, None)
                if owned is not None:
                    await _quietly(owned.producer.stop())
            metrics.OWNED_PARTITIONS.set(len(self.owned))

    async def assigned(self, tps: set[TopicPartition]) -> None:
        async with self._lock:
            started = time.perf_counter()
            mine = sorted(tp.partition for tp in tps if tp.topic == self.topics.events)
            for p in list(self._states):
                if p not in mine:
                    self._states.pop(p).close()
            for p in mine:
                if p not in self._states:
                    self._states[p] = PartitionState(self.state_root / str(p), self.budget)
            attempt = 0
            while True:
                try:
                    restored = await self._take(mine)
                    break
                except Exception as exc:
                    # The broker may be slow or away (a restart, a produce storm): the
                    # partitions stay ours; try again rather than leave them unprocessed.
                    if self._stopping:
                        raise
                    delay = _RESET_BACKOFF.delay_s(attempt)
                    log.warning("taking partitions %s failed (%r); next try in %.1f s",
                                mine, exc, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
            metrics.OWNED_PARTITIONS.set(len(self.owned))
            self.assigned_once = True
            self.rebalancing = False
            log.info("assigned partitions %s of %s (restored %d changelog records in %.2f s)",
                     mine, self.topics.events, restored, time.perf_counter() - started)

    # -- ticks -------------------------------------------------------------------------

    async def tick(self) -> None:
        """Write a tick record into each idle partition this worker owns.

        The tick goes through the log rather than straight into the core, so closing a
        window on an idle partition happens at one fixed offset and a replay closes it
        identically.
        """
        producer = self._ticks
        if producer is None or not self.ready:
            return
        bound_s = self.settings.aggregator.idle_close_after_s
        now = self.clock()
        for owned in list(self.owned.values()):
            if owned.fenced:
                continue
            idle = now - owned.last_record_wall >= bound_s
            # Idle and quiet partitions still tick now and then, so that expiry runs.
            needed = owned.busy or now - owned.last_record_wall >= 60 * bound_s
            if idle and needed:
                owned.last_record_wall = now
                await producer.send_and_wait(
                    self.topics.events, key=None, value=b"", partition=owned.partition,
                    headers=[(TICK_HEADER, str(int(now * 1000)).encode())])
                metrics.TICKS.inc()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka logs and swallows a listener's exception; a failed assignment would leave
    partitions that nobody processes, so it ends the process instead."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.plane.revoked(revoked)
        except Exception:
            _fail_stop("revoking partitions failed")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.plane.assigned(assigned)
        except Exception:
            if self.plane.stopping:
                return
            _fail_stop("taking the assigned partitions failed")


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception as exc:  # closing a client that already failed
        log.debug("ignored while closing: %r", exc)


def _fail_stop_on_error(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        _fail_stop("the data plane loop failed", task.exception())


def _fail_stop(what: str, exc: BaseException | None = None) -> None:
    """End the process: local state and Kafka are consistent at every instant, so a restart
    resumes exactly from the committed position."""
    log.critical("%s; stopping the worker (exit %d)", what, EXIT_DATA_PLANE_FAILED,
                 exc_info=exc if exc is not None else True)
    logging.shutdown()
    os._exit(EXIT_DATA_PLANE_FAILED)
