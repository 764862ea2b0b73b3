"""The delivery half of :class:`streams.sdk.producer.UsageProducer`: shipping batches,
settling their acknowledgements, the switch to the spool, and the watchdog, recovery and
replay loop (the guarantees are described in :mod:`streams.sdk.producer`).

:class:`_Delivery` is a base class of ``UsageProducer``, which creates every attribute
declared here in its ``__init__`` and implements :meth:`_Delivery._connect` and
:meth:`_Delivery._ship`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import ProducerClosed

from streams.errors import ProducerError
from streams.kafka.client import force_stop, send_records
from streams.sdk.spool import Position, Rescue, Spool, frame

log = logging.getLogger("streams.sdk.producer")


@dataclass(slots=True, eq=False)
class _Batch:
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




class _Delivery:
    """Shipping, delivery, spooling and replay; mixed into UsageProducer."""

    topic: str
    spool: Spool
    max_batch_size: int
    max_pending_batches: int
    fsync_interval_s: float
    unreachable_after_s: float
    replay_chunk_records: int
    retry_backoff_max_s: float
    _kafka: Any
    _partitions: list[int]
    _spooling: bool
    _client_failed: bool
    _open: dict[int, _Batch]
    _batch_of: dict[bytes, _Batch]
    _busy: dict[int, int]
    _queue: deque[_Batch]
    _inflight: dict[_Batch, None]
    _rescue_waiting: dict[Rescue, int]
    _linger_handle: asyncio.TimerHandle | None
    _wake_shipper: asyncio.Event
    _wake_keeper: asyncio.Event
    _room: asyncio.Event
    _changed: asyncio.Event
    _replay_pos: Position
    _replay_from: Position
    _replay_acked: list[bool]
    _replay_ends: list[Position]

    async def _connect(self) -> bool:
        """Make sure a started client is there (UsageProducer implements it)."""
        raise NotImplementedError

    def _ship(self, batch: _Batch) -> None:
        """Close an open batch and queue it for the ship loop (UsageProducer's)."""
        raise NotImplementedError

    # -- shipping and delivery -------------------------------------------------------

    async def _ship_loop(self) -> None:
        while True:
            if not self._queue:
                self._wake_shipper.clear()
                await self._wake_shipper.wait()
                continue
            batch = self._queue.popleft()
            kafka = self._kafka
            assert kafka is not None and not self._spooling
            self._inflight[batch] = None
            batch.sent_at = time.monotonic()
            try:
                future = await asyncio.wait_for(
                    kafka.send_batch(batch.builder, self.topic, partition=batch.partition),
                    self.unreachable_after_s)
            except Exception as exc:  # (any failure: spool, never drop)
                self._settle(batch, exc)
                continue
            future.add_done_callback(lambda f, b=batch: self._on_delivery(b, f))

    def _on_delivery(self, batch: _Batch, future: asyncio.Future[Any]) -> None:
        exc = (ProducerClosed() if future.cancelled() else future.exception())
        self._settle(batch, exc)

    def _settle(self, batch: _Batch, exc: BaseException | None) -> None:
        if batch not in self._inflight:
            return
        if exc is not None:
            self._client_failed = True
            log.warning("a batch of %d record(s) to partition %d failed (%s): spooling",
                        batch.count, batch.partition, type(exc).__name__)
            if not self._spooling:
                self._enter_spool(type(exc).__name__)
        del self._inflight[batch]
        partition = batch.partition
        busy = self._busy.get(partition, 0) - 1
        self._busy[partition] = max(busy, 0)
        if busy <= 0 and not self._spooling:
            lingering = self._open.get(partition)
            if lingering is not None and self._linger_handle is None:
                self._ship(lingering)  # its linger expired while the partition was busy
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

    def _enter_spool(self, reason: str) -> None:
        """Switch to the spool, keeping the order: in flight, queued, open, packs later."""
        if self._spooling:
            return
        log.warning("kafka unreachable (%s): spooling to %s", reason, self.spool.directory)
        self._spooling = True
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
        pending = [*self._queue, *self._open.values()]
        self._queue.clear()
        self._open.clear()
        self._batch_of.clear()
        self._busy.clear()
        for batch in pending:
            self.spool.append_framed(batch.framed())
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
        self._room.set()
        self._wake_keeper.set()

    # -- background: watchdog, recovery and replay -----------------------------------

    async def _keeper_loop(self) -> None:
        backoff_s = 0.1
        while True:
            if not self._spooling:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_keeper.wait(), 0.5)
                self._wake_keeper.clear()
                now = time.monotonic()
                if not self._spooling and any(
                    now - b.sent_at > self.unreachable_after_s for b in self._inflight
                ):
                    self._enter_spool(f"no acknowledgement in {self.unreachable_after_s} s")
                continue
            try:
                progressed = await self._replay_step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # (keep retrying; the data is on disk)
                log.warning("spool replay failed (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, backoff_s)
                progressed = False
            if progressed:
                backoff_s = 0.1
                continue
            self._wake_keeper.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_keeper.wait(), backoff_s)
            backoff_s = min(backoff_s * 2, self.retry_backoff_max_s)

    async def _replay_step(self) -> bool:
        """Replay one chunk of the spool; return whether anything moved."""
        if self._client_failed:
            # A failed batch leaves aiokafka's idempotent sequence numbers out of step with
            # the broker (OutOfOrderSequenceNumber for ever after): start a new producer id,
            # once the old client has nothing in flight.
            if self._inflight:
                return False
            kafka, self._kafka = self._kafka, None
            self._client_failed = False
            if kafka is not None:
                with contextlib.suppress(Exception):
                    await force_stop(kafka)
        if not await self._connect():
            return False
        chunk = self.spool.read(self._replay_pos, max_records=self.replay_chunk_records,
                                max_bytes=8 * self.max_batch_size)
        if not chunk.records:
            if chunk.end > self._replay_pos:
                await self._commit(chunk.end)
                return True
            if self._rescue_waiting or not self.spool.reset_if_drained():
                return False  # in-flight batches of the episode are not settled yet
            self._spooling = False
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
        if not await send_records(self._kafka, self.topic, self._partitions, records, acked):
            self._client_failed = True

    async def _fsync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            await self.spool.sync()
