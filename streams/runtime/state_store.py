"""The state table's hot path: batched RocksDB reads and writes, batched changelog records.

Faust's ``table[key] = value`` costs, per key, one RocksDB put and one changelog message
through Faust's producer buffer (a future, a buffer slot and a coroutine hop each). The
worker writes hundreds of keys per batch, so that path dominated its profile ("producer
buffer full" warnings, a third of the CPU in producer sends). This module writes one
partition's batch of state as:

- one RocksDB ``WriteBatch`` on the partition's database (Faust's own store, so
  recovery, standbys and the usage API read the same files), and
- the same records, in the same order, appended to aiokafka ``BatchBuilder``s and
  handed to the producer with ``send_batch``: one future per ~256 KiB, not per key.

What stays as Faust does it: the changelog topic and its format (raw key and value, a
tombstone for a deletion), the partition (the source partition), and the persisted
offset Faust keeps in each RocksDB database (set when a changelog batch is acknowledged).
Faust's commit flushes this same aiokafka producer before it commits offsets, so a
committed offset never runs ahead of the changelog. A changelog batch that fails for
good is fatal: :meth:`StateStore.check` raises, and the worker wraps the producer's
flush so that no offset commit follows a lost changelog write (see ``build_app``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rocksdict import WriteBatch

__all__ = ["ChangelogWriteFailed", "StateStore"]

log = logging.getLogger(__name__)


class ChangelogWriteFailed(RuntimeError):
    """A state changelog batch was not acknowledged: committing offsets would lose state."""


class _PartitionView:
    """Read view of one partition's RocksDB database (what the core's ``state`` reads)."""

    __slots__ = ("_db",)

    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._db.get(key.encode())
        return value

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        start = prefix.encode()
        for key in self._db.keys(from_key=start):
            if not key.startswith(start):
                return
            yield key.decode()


class StateStore:
    """Reads and writes one Faust table's partitions directly, changelog included."""

    def __init__(self, table: Any, producer: Callable[[], Any]) -> None:
        self._table = table
        self._producer = producer  # -> the started aiokafka producer Faust sends with
        self._failure: BaseException | None = None

    def _db(self, partition: int) -> Any:
        return self._table.data._db_for_partition(partition)

    def view(self, partition: int) -> _PartitionView:
        return _PartitionView(self._db(partition))

    def check(self) -> None:
        """Raise if a changelog batch failed since the worker started."""
        if self._failure is not None:
            raise ChangelogWriteFailed(
                f"a state changelog write failed ({self._failure!r}); stopping so that no "
                "offset is committed past it"
            ) from self._failure

    async def write(self, partition: int, writes: Sequence[tuple[str, bytes | None]]) -> int:
        """Apply ``writes`` in order; return the number of changelog batches sent."""
        if not writes:
            return 0
        self.check()
        producer = self._producer()
        topic: str = self._table.changelog_topic.get_topic_name()
        rocks = WriteBatch(raw_mode=True)
        builder = producer.create_batch()
        batches = 0
        for key, value in writes:
            kb = key.encode()
            if value is None:
                rocks.delete(kb)
            else:
                rocks.put(kb, value)
            if builder.append(key=kb, value=value, timestamp=None) is None:
                await self._send(producer, builder, topic, partition)
                batches += 1
                builder = producer.create_batch()
                builder.append(key=kb, value=value, timestamp=None)  # a first one always fits
        await self._send(producer, builder, topic, partition)
        self._db(partition).write(rocks)
        return batches + 1

    async def _send(self, producer: Any, builder: Any, topic: str, partition: int) -> None:
        count = builder.record_count()
        fut = await producer.send_batch(builder, topic, partition=partition)
        store = self._table.data

        def done(f: Any) -> None:
            if f.cancelled():
                self._fail(RuntimeError("changelog batch cancelled"))
                return
            exc = f.exception()
            if exc is not None:
                self._fail(exc)
                return
            meta = f.result()
            # Faust's marker of what this database already holds: recovery reads on from it.
            store.set_persisted_offset(meta.topic_partition, meta.offset + count - 1)

        fut.add_done_callback(done)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            log.critical("state changelog write failed: %r; the worker stops", exc)
            self._failure = exc
