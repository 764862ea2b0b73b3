"""The Transaction port on aiokafka: one transactional producer per owned partition.

The transactional id is ``{app_id}-{events topic}-{partition}``. aiokafka (0.14) has no
KIP-447 consumer-group-metadata fencing, so the id must be per input partition (the
"EOS alpha" scheme of Kafka Streams): when the group moves a partition, the new owner's
``start()`` initialises a producer with the same id, which bumps its epoch, aborts any
transaction the old owner left open, and fences the old producer for good. Whatever the
old owner (a frozen worker that woke up) tries next with it fails, and this adapter turns
that into :class:`~streams.errors.PartitionFencedError`.

Records go out through aiokafka's ``BatchBuilder`` and ``send_batch``: one future per
~256 KiB instead of one per record. Records without an explicit partition are
partitioned by key with Kafka's murmur2 (the Java client's and the SDK's partitioner),
so one customer's outputs keep one partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from streams.errors import PartitionFencedError
from streams.kafka.client import key_partition
from streams.runtime.ports import OutRecord

__all__ = ["PartitionProducer", "quiet_fenced_futures", "transactional_id"]

log = logging.getLogger(__name__)

_FENCED = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)
MAX_BATCH_BYTES = 256 * 1024
# aiokafka waits this long before asking again when the coordinator answers
# CONCURRENT_TRANSACTIONS, which it does while the previous commit's markers are being
# written (KAFKA-5477): a partition begins its next transaction right after the last one
# commits, so the default 100 ms would be added to most batches' latency.
TXN_RETRY_BACKOFF_MS = 5
# aiokafka's record builder wants a list and only reads it: one shared empty list spares
# an allocation per changelog record.
_NO_HEADERS: list[tuple[str, bytes]] = []


def transactional_id(app_id: str, events_topic: str, partition: int) -> str:
    return f"{app_id}-{events_topic}-{partition}"


def quiet_fenced_futures(loop: asyncio.AbstractEventLoop) -> None:
    """Log aiokafka's unretrieved "fenced" futures at DEBUG instead of asyncio's ERROR.

    When a producer is fenced, aiokafka fails every future its transaction manager holds,
    and those nobody awaits are reported by asyncio as "Future exception was never
    retrieved" at ERROR when collected: a dozen lines for one expected event, which the
    data plane has already handled (and counted in meterstream_partitions_fenced_total).
    Every other unhandled exception keeps asyncio's default report.
    """
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), _FENCED):
            log.debug("a fenced producer's future: %s", context.get("message"))
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _LastOffset:
    """Awaitable offset of the last record sent: created at once, awaited (or not) later.

    A plain class rather than a coroutine or task, so that a batch abandoned before its
    commit leaves no never-awaited coroutine and no unretrieved task exception behind.
    """

    __slots__ = ("_counts", "_futures", "_partition")

    def __init__(self, partition: int, futures: list[asyncio.Future[Any]],
                 counts: list[int]) -> None:
        self._partition = partition
        self._futures = futures
        self._counts = counts

    def __await__(self) -> Generator[Any, None, int]:
        return self._wait().__await__()

    async def _wait(self) -> int:
        offset = -1
        for future, count in zip(self._futures, self._counts, strict=True):
            try:
                meta = await future
            except _FENCED as exc:
                raise PartitionFencedError(self._partition) from exc
            offset = meta.offset + count - 1
        return offset


class PartitionProducer:
    """A started transactional producer for one input partition (the Transaction port)."""

    def __init__(self, partition: int, producer: AIOKafkaProducer) -> None:
        self.partition = partition
        self._producer = producer
        self._partitions: dict[str, list[int]] = {}

    @classmethod
    async def start(cls, partition: int, *, app_id: str, events_topic: str,
                    options: dict[str, Any], compression: str = "none") -> PartitionProducer:
        """Create and start the producer; this fences every older owner of the partition."""
        producer = AIOKafkaProducer(
            **options,
            transactional_id=transactional_id(app_id, events_topic, partition),
            enable_idempotence=True,
            acks="all",
            compression_type=None if compression == "none" else compression,
            linger_ms=0,
            retry_backoff_ms=TXN_RETRY_BACKOFF_MS,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=4 * MAX_BATCH_BYTES,
            # A commit that takes longer than this is aborted by the broker.
            transaction_timeout_ms=60_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return cls(partition, producer)

    async def stop(self) -> None:
        await self._producer.stop()

    async def _call(self, op: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await op()
        except _FENCED as exc:
            raise PartitionFencedError(self.partition) from exc

    async def begin(self) -> None:
        await self._call(self._producer.begin_transaction)

    async def _partitions_of(self, topic: str) -> list[int]:
        found = self._partitions.get(topic)
        if found is None:
            found = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        return found

    async def send(
        self, topic: str, records: Sequence[OutRecord], *, partition: int | None = None
    ) -> Awaitable[int]:
        """Send ``records`` in batches; the awaitable gives the last record's offset (of
        the last batch: with partition None that is the offset in its own partition)."""
        builders: dict[int, Any] = {}
        futures: list[asyncio.Future[Any]] = []
        counts: list[int] = []
        producer = self._producer
        partitions = None if partition is not None else await self._partitions_of(topic)
        for key, value, headers in records:
            if partition is not None:
                p = partition
            else:
                assert partitions is not None
                p = key_partition(key or b"", partitions)
            builder = builders.get(p)
            if builder is None:
                builder = builders[p] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value,
                              headers=list(headers) if headers else _NO_HEADERS) is None:
                await self._send_batch(builder, topic, p, futures, counts)
                builder = builders[p] = producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value,
                                  headers=list(headers) if headers else _NO_HEADERS) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes is larger than a "
                                     f"batch ({MAX_BATCH_BYTES} bytes)")
        for p, builder in builders.items():
            if builder.record_count():
                await self._send_batch(builder, topic, p, futures, counts)

        return _LastOffset(self.partition, futures, counts)

    async def _send_batch(self, builder: Any, topic: str, partition: int,
                          futures: list[asyncio.Future[Any]], counts: list[int]) -> None:
        counts.append(builder.record_count())
        future = await self._call(
            lambda: self._producer.send_batch(builder, topic, partition=partition))
        # Marks a failure as seen: a batch abandoned before its commit (the commit reports
        # the failure) must not log "exception was never retrieved" when collected.
        future.add_done_callback(_retrieve)
        futures.append(future)

    async def flush(self) -> None:
        await self._call(self._producer.flush)

    async def send_offset(self, topic: str, partition: int, next_offset: int,
                          group_id: str) -> None:
        offsets = {TopicPartition(topic, partition): next_offset}
        await self._call(lambda: self._producer.send_offsets_to_transaction(offsets, group_id))

    async def commit(self) -> None:
        await self._call(self._producer.commit_transaction)

    async def abort(self) -> None:
        await self._call(self._producer.abort_transaction)
