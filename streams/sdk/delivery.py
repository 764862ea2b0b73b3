"""The delivery half of :class:`streams.sdk.producer.UsageProducer`: the Kafka client,
shipping closed batches, settling their acknowledgements, the switch to the spool, and the
watchdog, recovery and replay loop (the guarantees are described in
:mod:`streams.sdk.producer`).

:class:`Delivery` is a collaborator of the producer, not a base class. The producer fills
:class:`Batch` objects (its batching half: packs, open batches, linger) and hands each
closed one to :meth:`Delivery.submit`; what it reads back is narrow: ``spooling``, the
client (``kafka``, to create batches) and its ``partitions``, :meth:`Delivery.busy`,
:meth:`Delivery.pending` and the waits. The delivery reaches back through three calls
given at construction:

- ``take_open()``: the producer's open batches, which the spool takes over (in partition
  order) and the producer forgets;
- ``on_idle(partition)``: the partition's last queued or in-flight batch settled (the
  producer ships a batch that lingered meanwhile);
- ``on_connected()``: a new client is up (the producer forgets its partition cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import ProducerClosed

from streams.errors import ProducerError
from streams.kafka.client import force_stop, send_records
from streams.sdk.spool import Position, Rescue, Spool, frame
from streams.util.backoff import Backoff

__all__ = ["Batch", "Delivery"]

log = logging.getLogger("streams.sdk.producer")

_REPLAY_BACKOFF_BASE_S = 0.1  # the first wait after a replay step that moved nothing


@dataclass(slots=True, eq=False)
class Batch:
    """One aiokafka batch of one partition, from its first record to its settlement."""

    partition: int
    builder: Any  # aiokafka BatchBuilder (untyped)
    # The batch's records again, for the spool should Kafka fail: keys and values
    # concatenated, and their lengths. Not the value objects: keeping 10^5 orjson outputs
    # alive costs ~2.5 us each in allocator work (measured), more than the append itself.
    data: bytearray = field(default_factory=bytearray)
    lengths: array[int] = field(default_factory=lambda: array("L"))
    done: asyncio.Future[None] | None = None
    sent_at: float = 0.0
    rescue: Rescue | None = None
    rescue_range: tuple[int, int] = (0, 0)

    @property
    def count(self) -> int:
        return len(self.lengths) // 2

    def framed(self) -> bytes:
        """The records in spool format."""
        out = []
        pos = 0
        data = self.data
        lengths = self.lengths
        for i in range(0, len(lengths), 2):
            key_end = pos + lengths[i]
            end = key_end + lengths[i + 1]
            out.append(frame(bytes(data[pos:key_end]), bytes(data[key_end:end])))
            pos = end
        return b"".join(out)


class Delivery:
    """Ships batches to Kafka and, while Kafka is away, to the spool; replays the spool.

    Not thread-safe: the producer's event loop only. Durations carry their unit.
    """

    def __init__(
        self,
        topic: str,
        spool: Spool,
        *,
        make_client: Callable[[], Any],
        bootstrap_servers: str,
        request_timeout_s: float,
        max_batch_size: int,
        max_pending_batches: int,
        fsync_interval_s: float,
        unreachable_after_s: float,
        replay_chunk_records: int,
        retry_backoff_max_s: float,
        take_open: Callable[[], list[Batch]],
        on_idle: Callable[[int], None],
        on_connected: Callable[[], None],
    ) -> None:
        self.topic = topic
        self.spool = spool
        self._make_client = make_client
        self._bootstrap_servers = bootstrap_servers
        self._request_timeout_s = request_timeout_s
        self._max_batch_size = max_batch_size
        self.max_pending_batches = max_pending_batches
        self._fsync_interval_s = fsync_interval_s
        self.unreachable_after_s = unreachable_after_s
        self._replay_chunk_records = replay_chunk_records
        self._backoff = Backoff(base_s=_REPLAY_BACKOFF_BASE_S, cap_s=retry_backoff_max_s,
                                jitter=False)
        self._take_open = take_open
        self._on_idle = on_idle
        self._on_connected = on_connected

        self.kafka: Any = None  # an AIOKafkaProducer, or what make_client made
        self.partitions: list[int] = []
        # Whether events go to the spool: Kafka unreachable, or the spool not drained yet.
        self.spooling = False
        self._client_failed = False  # a batch failed: replace the client before replay
        self._connect_failures = 0
        self._busy: dict[int, int] = {}  # partition -> batches queued or in flight
        self._queue: deque[Batch] = deque()
        # Shipped, not yet settled; a dict for its order (the order batches were shipped).
        self._inflight: dict[Batch, None] = {}
        self._rescue_waiting: dict[Rescue, int] = {}
        self._wake_shipper = asyncio.Event()
        self._wake_keeper = asyncio.Event()
        self._room = asyncio.Event()
        self._changed = asyncio.Event()  # a batch settled or the spool drained
        self._tasks: list[asyncio.Task[None]] = []
        self._replay_pos = Position(0, 0)
        self._replay_from = Position(-1, 0)  # the chunk in _replay_acked starts here
        self._replay_acked: list[bool] = []
        self._replay_ends: list[Position] = []

    # -- what the producer calls -----------------------------------------------------

    async def start(self) -> None:
        """Resume after the spool's cursor, connect (or spool), start the loops.

        The spool must be open.
        """
        self._replay_pos = self.spool.cursor
        if self.spool.has_data_after(self._replay_pos):
            self.spooling = True
        if not await self.connect():
            self.spooling = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ship_loop(), name="meterstream-producer-ship"),
            loop.create_task(self._keeper_loop(), name="meterstream-producer-keeper"),
            loop.create_task(self._fsync_loop(), name="meterstream-producer-fsync"),
        ]

    async def connect(self) -> bool:
        """Make sure a started client is there; False (and no client) if Kafka is away."""
        if self.kafka is not None:
            return True
        kafka = self._make_client()
        try:
            await asyncio.wait_for(kafka.start(), self._request_timeout_s)
            partitions = sorted(await asyncio.wait_for(
                kafka.partitions_for(self.topic), self._request_timeout_s))
        except Exception as exc:  # any failure to connect: spool and retry later
            # Once per outage at WARNING; the retries every few seconds at DEBUG.
            log.log(logging.DEBUG if self._connect_failures else logging.WARNING,
                    "kafka unreachable at %s (%s): spooling", self._bootstrap_servers,
                    type(exc).__name__)
            self._connect_failures += 1
            with contextlib.suppress(Exception):
                await force_stop(kafka)
            return False
        if self._connect_failures:
            log.info("kafka reachable again at %s after %d failed attempt(s)",
                     self._bootstrap_servers, self._connect_failures)
        self._connect_failures = 0
        self.kafka = kafka
        self.partitions = partitions
        self._on_connected()
        return True

    def submit(self, batch: Batch) -> None:
        """Queue a closed batch for the ship loop; ``batch.done`` resolves when it settles
        (acknowledged by Kafka, or handed to the spool)."""
        partition = batch.partition
        self._busy[partition] = self._busy.get(partition, 0) + 1
        batch.done = asyncio.get_running_loop().create_future()
        self._queue.append(batch)
        self._wake_shipper.set()

    def busy(self, partition: int) -> bool:
        """Whether a batch of ``partition`` is queued or in flight."""
        return bool(self._busy.get(partition))

    def pending(self) -> int:
        """Batches queued or in flight (not settled yet)."""
        return len(self._queue) + len(self._inflight)

    async def wait_room(self) -> None:
        """Return once fewer than ``max_pending_batches`` batches are pending."""
        while len(self._queue) + len(self._inflight) >= self.max_pending_batches:
            self._room.clear()
            await self._room.wait()

    async def wait_settled(self) -> None:
        """Return when every batch submitted so far has settled."""
        waiters = [b.done for b in (*self._queue, *self._inflight) if b.done is not None]
        if waiters:
            await asyncio.gather(*waiters)

    async def drain(self) -> None:
        """Replay what the spool holds (if Kafka is there) and let in-flight batches
        settle; the caller bounds the wait."""
        while (self.spooling and self.kafka is not None) or self._inflight:
            self._changed.clear()
            self._wake_keeper.set()
            await self._changed.wait()

    async def stop(self) -> None:
        """Spool what is still pending, stop the loops, keep the replay's acknowledged
        prefix, stop the client. The caller syncs and closes the spool."""
        if not self.spooling and (self._queue or self._inflight):
            self.enter_spool("closing")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._commit_acked_prefix()  # a replay cut short by close()
        if self.kafka is not None:
            await force_stop(self.kafka)

    def enter_spool(self, reason: str) -> None:
        """Switch to the spool, keeping the order: in flight, queued, open, packs later."""
        if self.spooling:
            return
        log.warning("kafka unreachable (%s): spooling to %s", reason, self.spool.directory)
        self.spooling = True
        rescue = self.spool.begin_episode()
        for batch in self._inflight:
            batch.rescue = rescue
            batch.rescue_range = rescue.append_framed(batch.framed())
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)  # durable once the spool is synced
        if self._inflight:
            self._rescue_waiting[rescue] = len(self._inflight)
        else:
            rescue.seal()
        pending = [*self._queue, *self._take_open()]
        self._queue.clear()
        self._busy.clear()
        for batch in pending:
            self.spool.append_framed(batch.framed())
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
        self._room.set()
        self._wake_keeper.set()

    # -- shipping and delivery -------------------------------------------------------

    async def _ship_loop(self) -> None:
        while True:
            if not self._queue:
                self._wake_shipper.clear()
                await self._wake_shipper.wait()
                continue
            batch = self._queue.popleft()
            kafka = self.kafka
            assert kafka is not None and not self.spooling
            self._inflight[batch] = None
            batch.sent_at = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: wait_for wraps the call in a task of its
                # own, a few more loop callbacks a batch for a call that rarely waits.
                async with asyncio.timeout(self.unreachable_after_s):
                    future = await kafka.send_batch(batch.builder, self.topic,
                                                    partition=batch.partition)
            except Exception as exc:  # (any failure: spool, never drop)
                self._settle(batch, exc)
                continue
            future.add_done_callback(lambda f, b=batch: self._on_delivery(b, f))

    def _on_delivery(self, batch: Batch, future: asyncio.Future[Any]) -> None:
        exc = (ProducerClosed() if future.cancelled() else future.exception())
        self._settle(batch, exc)

    def _settle(self, batch: Batch, exc: BaseException | None) -> None:
        if batch not in self._inflight:
            return
        if exc is not None:
            self._client_failed = True
            log.warning("a batch of %d record(s) to partition %d failed (%s): spooling",
                        batch.count, batch.partition, type(exc).__name__)
            if not self.spooling:
                self.enter_spool(type(exc).__name__)
        del self._inflight[batch]
        partition = batch.partition
        busy = self._busy.get(partition, 0) - 1
        self._busy[partition] = max(busy, 0)
        if busy <= 0 and not self.spooling:
            self._on_idle(partition)
        rescue = batch.rescue
        if rescue is not None:
            if exc is None:
                rescue.mark_delivered(batch.rescue_range)
            self._rescue_waiting[rescue] -= 1
            if not self._rescue_waiting[rescue]:
                del self._rescue_waiting[rescue]
                rescue.seal()
                self._wake_keeper.set()
        if batch.done is not None and not batch.done.done():
            batch.done.set_result(None)
        if len(self._queue) + len(self._inflight) < self.max_pending_batches:
            self._room.set()
        self._changed.set()

    # -- background: watchdog, recovery and replay -----------------------------------

    async def _keeper_loop(self) -> None:
        idle_steps = 0  # replay steps in a row that moved nothing
        while True:
            if not self.spooling:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_keeper.wait(), 0.5)
                self._wake_keeper.clear()
                now = time.monotonic()
                if not self.spooling and any(
                    now - b.sent_at > self.unreachable_after_s for b in self._inflight
                ):
                    self.enter_spool(f"no acknowledgement in {self.unreachable_after_s} s")
                continue
            delay_s = self._backoff.delay_s(idle_steps)
            try:
                progressed = await self._replay_step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # (keep retrying; the data is on disk)
                log.warning("spool replay failed (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, delay_s)
                progressed = False
            if progressed:
                idle_steps = 0
                continue
            self._wake_keeper.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_keeper.wait(), delay_s)
            idle_steps += 1

    async def _replay_step(self) -> bool:
        """Replay one chunk of the spool; return whether anything moved."""
        if self._client_failed:
            # A failed batch leaves aiokafka's idempotent sequence numbers out of step with
            # the broker (OutOfOrderSequenceNumber for ever after): start a new producer id,
            # once the old client has nothing in flight.
            if self._inflight:
                return False
            kafka, self.kafka = self.kafka, None
            self._client_failed = False
            if kafka is not None:
                with contextlib.suppress(Exception):
                    await force_stop(kafka)
        if not await self.connect():
            return False
        chunk = self.spool.read(self._replay_pos, max_records=self._replay_chunk_records,
                                max_bytes=8 * self._max_batch_size)
        if not chunk.records:
            if chunk.end > self._replay_pos:
                await self._commit(chunk.end)
                return True
            if self._rescue_waiting or not self.spool.reset_if_drained():
                return False  # in-flight batches of the episode are not settled yet
            self.spooling = False
            self._replay_pos = self.spool.cursor
            self._changed.set()
            log.info("spool drained: sending to kafka directly again")
            return True
        # Records of this chunk that Kafka acknowledged in an earlier attempt are not sent
        # again (the spool is append-only: the same start position reads the same prefix).
        previous = self._replay_acked if self._replay_from == self._replay_pos else []
        acked = previous[: len(chunk.records)]
        acked += [False] * (len(chunk.records) - len(acked))
        self._replay_from, self._replay_acked, self._replay_ends = (
            self._replay_pos, acked, chunk.ends)
        await self._send_chunk(chunk.records, acked)
        if all(acked):
            await self._commit(chunk.end)
            return True
        await self._commit_acked_prefix()
        raise ProducerError(f"{acked.count(False)} spooled record(s) not acknowledged")

    async def _commit_acked_prefix(self) -> None:
        """Move the cursor past the acknowledged prefix of the chunk being replayed."""
        acked = self._replay_acked
        if self._replay_from != self._replay_pos:
            return
        prefix = next((i for i, ok in enumerate(acked) if not ok), len(acked))
        if prefix:
            await self._commit(self._replay_ends[prefix - 1])

    async def _commit(self, position: Position) -> None:
        await self.spool.commit(position)
        self._replay_pos = position

    async def _send_chunk(self, records: list[tuple[bytes, bytes]], acked: list[bool]) -> None:
        if not await send_records(self.kafka, self.topic, self.partitions, records, acked):
            self._client_failed = True

    async def _fsync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._fsync_interval_s)
            await self.spool.sync()
