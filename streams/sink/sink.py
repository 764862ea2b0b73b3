"""StripeSink: usage.summaries -> Stripe meter events, committing only what is finished.

The pieces, each in its own module: plan.py (summary -> events), dispatch.py (per-pair
queues, batching, limits, retries), customers.py (Stripe customer ids, held summaries),
offsets.py (the commit rule), kafka_io.py (DLQ writer). This module only wires them to a
Kafka consumer.

Flow of one record, and why each step is safe:

1. **Read** (group ``<app_id>-sink``, read_committed, no auto-commit). The offset is
   tracked as unfinished *before* anything else, so no later commit can pass it until
   step 5 says so.
2. **Decode and route.** Undecodable or unknown-meter summaries go to the DLQ (step 5).
   An id already finished in this process is finished at once (``duplicate``): Stripe
   already has its events. Otherwise the summary waits for its customer's Stripe id
   (held, never dropped, offset stays open) or is queued on its (customer, meter) pair.
3. **Send** (dispatch.py): in order per pair, one call in flight per pair, rate limited,
   retried forever on retryable errors. Identifiers are deterministic, so any resend
   (retry after a timeout, replay after a crash) is a no-op at Stripe.
4. **Dead-letter** permanent failures to usage.summaries.dlq and wait for Kafka's ack.
   Not a refused key (401, 403): that holds every summary unfinished instead (auth.py).
5. **Finish**: only after Stripe accepted every event of the summary, or Kafka acked its
   dead-letter record, is its offset marked finished.
6. **Commit** every ``commit_interval_s`` per partition up to the lowest unfinished offset
   (offsets.py). A crash anywhere replays from there: at worst summaries already sent are
   sent again and Stripe drops them as duplicates (within its >= 24 h identifier window).

Rebalance: revoked partitions get a last commit of what is finished; their queued and
held work is dropped (the new owner reads it again from the committed offset). Calls in
flight for them may still complete; that only sends identifiers the new owner would send.

Start: every Kafka client waits for the broker if it is down (kafka_io.start_when_reachable)
instead of ending the process; a broker that answers but goes on refusing us (login, TLS)
for kafka_io.REFUSED_GRACE_S ends it.

Shutdown (:meth:`stop`): stop fetching, give calls in flight ``shutdown_grace_s`` to
finish, abandon the rest (unfinished, so not committed), commit, close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams.config import Settings
from streams.errors import ConfigError, PlanError
from streams.kafka.client import connection_options
from streams.sink.customers import CustomerDirectory, CustomersReader, HeldSummaries
from streams.sink.dispatch import Dispatcher, Work
from streams.sink.engines import engine_meters, engine_problems, engine_profile, sink_group_id
from streams.sink.kafka_io import DeadLetterWriter, Source, start_when_reachable
from streams.sink.metrics import SinkMetrics, default_metrics
from streams.sink.model import MeterEventClient
from streams.sink.offsets import PartitionOffsets
from streams.sink.plan import parse_summary
from streams.sink.ratelimit import TokenBucket
from streams.util.backoff import Backoff

__all__ = ["StripeSink"]

log = logging.getLogger(__name__)


class StripeSink:
    """Consumes usage.summaries and sends them through ``client``; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        client: MeterEventClient,
        *,
        metrics: SinkMetrics | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        backoff: Backoff | None = None,
        commit_interval_s: float = 1.0,
        max_pending: int = 50_000,
        held_recheck_s: float = 30.0,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        problems = engine_problems(settings)
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.engine = engine = engine_profile(settings)
        self.metrics = metrics or default_metrics()
        self.topic = settings.topics.summaries
        self.group_id = sink_group_id(settings)
        self._commit_interval_s = commit_interval_s
        self._max_pending = max_pending
        self._held_recheck_s = held_recheck_s
        self._shutdown_grace_s = shutdown_grace_s
        self._secret = engine.secret
        self._meters = engine_meters(settings)
        self.directory = CustomerDirectory(on_mapped=self._release)
        self.held: HeldSummaries[Work] = HeldSummaries()
        self._offsets: dict[int, PartitionOffsets] = {}
        self._stopping = asyncio.Event()
        self.running = asyncio.Event()
        """Set once the customers are loaded and the consumer is subscribed."""
        self._paused = False
        kafka = settings.kafka
        self._customers = CustomersReader(kafka, settings.topics.customers, self.directory,
                                          client_id=f"{kafka.client_id}-sink-customers",
                                          engine=engine.name)
        self._dlq = DeadLetterWriter(kafka, settings.topics.summaries_dlq)
        self._dlq_backoff = Backoff(base_s=0.5, cap_s=10.0)
        self._consumer = AIOKafkaConsumer(
            **connection_options(kafka),
            client_id=f"{kafka.client_id}-sink",
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        rate = engine.rate_limit_per_s
        self.dispatcher = Dispatcher(
            client,
            self._meters,
            on_finished=self._on_finished,
            dead_letter=self._dead_letter_work,
            metrics=self.metrics,
            # A burst of 50 ms worth of calls: enough to absorb scheduling hiccups, small
            # enough that any 1 s window sees at most 1.05 x the rate leave the process.
            bucket=TokenBucket(rate, max(1.0, rate / 20)),
            max_concurrency=engine.max_concurrency,
            call_timeout_s=engine.timeout_s * 2 + 5,
            client_timeout_s=engine.timeout_s,
            backoff=backoff,
            escalate_after=engine.max_retries,
            clock_ms=clock_ms,
            redact=self.redact,
            auth_retry_s=engine.auth_retry_s,
            limits=engine.limits,
        )

    # -- public -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully (safe from a signal handler)."""
        self._stopping.set()

    @property
    def pending(self) -> int:
        """Summaries read and not finished (queued, in flight, backing off or held)."""
        return sum(t.unfinished() for t in self._offsets.values())

    def redact(self, text: str) -> str:
        """``text`` without the engine's credential (error messages may echo request data)."""
        return text.replace(self._secret, "**********") if self._secret else text

    async def run(self) -> None:
        """Run until :meth:`stop`; every started resource is closed on the way out."""
        servers = self.settings.kafka.bootstrap_servers
        customers_task = asyncio.create_task(self._customers.run(), name="sink-customers")
        tasks: list[asyncio.Task[None]] = [customers_task]
        try:
            # Kafka may be away at start: each client waits for it, and a stop asked for
            # meanwhile ends the wait (nothing has been read, so nothing is lost).
            if not (await self._unless_stopping(self._customers.ready.wait(), customers_task)
                    and await self._unless_stopping(self._dlq.start())
                    and await self._unless_stopping(start_when_reachable(
                        self._consumer, "summaries consumer", servers))):
                return
            self._consumer.subscribe([self.topic], listener=_Listener(self))
            tasks += [
                asyncio.create_task(self.dispatcher.run(), name="sink-dispatch"),
                asyncio.create_task(self._commit_loop(), name="sink-commit"),
                asyncio.create_task(self._recheck_held_loop(), name="sink-held"),
            ]
            self.running.set()
            log.info("%s sink running: topic=%s group=%s customers=%d", self.engine.name,
                     self.topic, self.group_id, len(self.directory))
            await self._consume()
            # Shutdown, in order: in-flight calls finish or are abandoned, then commit.
            await self.dispatcher.close(self._shutdown_grace_s)
            await self._commit()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._consumer.stop()
            await self._dlq.stop()
            log.info("%s sink stopped: %d summaries unfinished, %d held", self.engine.name,
                     self.pending, len(self.held))

    # -- consuming ----------------------------------------------------------------------------
    async def _unless_stopping(self, waiting: Any,
                               task: asyncio.Task[None] | None = None) -> bool:
        """Wait for ``waiting``; False if :meth:`stop` came first. With ``task`` (which
        should make ``waiting`` complete), raise its error if it dies first."""
        waiter = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stopping.wait())
        watched = {waiter, stop} | ({task} if task is not None else set())
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if waiter in done:
            waiter.result()
            return True
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        if task is not None and task in done:
            task.result()  # raises the reader's error
            raise RuntimeError("customers reader stopped before loading the customers")
        return False

    async def _consume(self) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                fetch = asyncio.ensure_future(
                    self._consumer.getmany(timeout_ms=500, max_records=5000))
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    break
                assigned = self._consumer.assignment()
                for tp, records in fetch.result().items():
                    for record in records:
                        if tp in assigned:
                            await self._intake(record)
                await self._seen_to_positions(assigned)
                self._backpressure()
        finally:
            stop.cancel()

    async def _intake(self, record: Any) -> None:
        """Track, decode and route one record (flow steps 1 and 2)."""
        tracker = self._offsets.setdefault(record.partition, PartitionOffsets())
        tracker.track(record.offset)
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        source = Source(record.topic, record.partition, record.offset, key)
        raw: bytes = record.value if record.value is not None else b""
        try:
            summary = parse_summary(raw)
        except PlanError as exc:
            await self._write_dlq(source, raw, exc.reason, exc.detail)
            self._finish_offset(tracker, source.partition, source.offset, "dead_lettered")
            return
        work = Work(summary=summary, raw=raw, source=source, owner=tracker)
        if self.dispatcher.is_done(summary.id):
            self._on_finished(work, "duplicate")
            return
        if summary.meter not in self._meters:
            await self._write_dlq(source, raw, "unknown_meter",
                                  f"meter {summary.meter!r} is not configured")
            self._on_finished(work, "dead_lettered")
            return
        stripe_id = self.directory.get(summary.customer)
        if stripe_id is None or self.held.has(summary.customer):
            if not self.held.has(summary.customer):
                log.info("holding summaries of customer=%s: no %s customer id yet "
                         "(partition=%d offset=%d)", summary.customer, self.engine.name,
                         source.partition, source.offset)
            self.held.hold(summary.customer, work)
            self.metrics.held.set(len(self.held))
            return
        work.stripe_customer_id = stripe_id
        self.dispatcher.submit(work)

    def _backpressure(self) -> None:
        """Pause fetching while too much is unfinished; held summaries count too."""
        pending = self.pending
        self.metrics.pending.set(pending)
        assigned = list(self._consumer.assignment())
        if not self._paused and pending >= self._max_pending:
            self._consumer.pause(*assigned)
            self._paused = True
            log.info("pausing the summaries consumer: %d summaries unfinished", pending)
        elif self._paused and pending < self._max_pending // 2:
            self._consumer.resume(*assigned)
            self._paused = False
            log.info("resuming the summaries consumer: %d summaries unfinished", pending)

    # -- finishing ----------------------------------------------------------------------------
    def _on_finished(self, work: Work, outcome: str) -> None:
        """Flow step 5. Work read under a previous assignment no longer counts."""
        tracker = self._offsets.get(work.source.partition)
        if tracker is None or tracker is not work.owner:
            return
        self._finish_offset(tracker, work.source.partition, work.source.offset, outcome)

    def _finish_offset(self, tracker: PartitionOffsets, partition: int, offset: int,
                       outcome: str) -> None:
        tracker.finish(offset)
        self.metrics.summaries.labels(outcome=outcome).inc()
        self.metrics.pending.set(self.pending)

    async def _dead_letter_work(self, work: Work, reason: str, detail: str) -> None:
        await self._write_dlq(work.source, work.raw, reason, detail)

    async def _write_dlq(self, source: Source, raw: bytes, reason: str, detail: str) -> None:
        """Write a dead-letter record; retry until Kafka acks (step 4 must not be skipped)."""
        detail = self.redact(detail)
        attempt = 0
        while True:
            try:
                await self._dlq.write(source, raw, reason, detail)
                break
            except KafkaError as exc:
                delay = self._dlq_backoff.delay_s(attempt)
                attempt += 1
                log.error("could not write the dead-letter record partition=%d offset=%d "
                          "(attempt %d), retrying in %.1f s: %r", source.partition,
                          source.offset, attempt, delay, exc)
                await asyncio.sleep(delay)
        self.metrics.dlq.labels(reason=reason).inc()
        log.warning("dead-lettered summary customer=%s partition=%d offset=%d reason=%s",
                    source.key, source.partition, source.offset, reason)

    # -- held summaries -----------------------------------------------------------------------
    def _release(self, customer: str) -> None:
        """The customer just got a Stripe id: queue its held summaries, in order."""
        stripe_id = self.directory.get(customer)
        if stripe_id is None or not self.held.has(customer):
            return
        works = self.held.release(customer)
        log.info("releasing %d held summaries of customer=%s", len(works), customer)
        for work in works:
            work.stripe_customer_id = stripe_id
            self.dispatcher.submit(work)
        self.metrics.held.set(len(self.held))

    async def _recheck_held_loop(self) -> None:
        while True:
            await asyncio.sleep(self._held_recheck_s)
            for customer in self.held.customers():
                self._release(customer)
            if len(self.held):
                log.info("%d summaries of %d customers still wait for a %s customer id",
                         len(self.held), len(self.held.customers()), self.engine.name)

    async def _seen_to_positions(self, assigned: set[TopicPartition]) -> None:
        """Every record the consumer returned so far is tracked now (no fetch is in flight):
        its position may be past them, over the commit markers of the worker's
        transactions, which hold no record. Committing up to there skips nothing, and a
        caught-up group then has committed the topic's end offset."""
        for tp in assigned:
            if tp.topic != self.topic:
                continue
            position = await self._consumer.position(tp)
            self._offsets.setdefault(tp.partition, PartitionOffsets()).seen_to(position)

    # -- committing ---------------------------------------------------------------------------
    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self._commit()
            self._backpressure()

    async def _commit(self, partitions: set[int] | None = None) -> None:
        """Commit, per assigned partition, up to its lowest unfinished offset (step 6)."""
        assigned = {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}
        offsets: dict[TopicPartition, int] = {}
        for partition, tracker in self._offsets.items():
            if partition not in assigned or (partitions is not None
                                             and partition not in partitions):
                continue
            offset = tracker.to_commit()
            if offset is not None:
                offsets[TopicPartition(self.topic, partition)] = offset
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Rebalancing or a broker hiccup: the next tick commits again.
            log.warning("offset commit failed, will retry: %r", exc)
            return
        for tp, offset in offsets.items():
            self._offsets[tp.partition].mark_committed(offset)
        log.debug("committed %s", {tp.partition: o for tp, o in offsets.items()})

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self.topic}
        if not partitions:
            return
        await self._commit(partitions)
        dropped = self.dispatcher.drop(lambda w: w.source.partition not in partitions)
        dropped += self.held.drop(lambda w: w.source.partition not in partitions)
        for partition in partitions:
            self._offsets.pop(partition, None)
        self.metrics.held.set(len(self.held))
        log.info("partitions revoked %s: dropped %d queued summaries", sorted(partitions),
                 dropped)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: StripeSink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sink._revoked(revoked)  # noqa: SLF001 - the sink's own listener

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned %s", sorted(tp.partition for tp in assigned))
