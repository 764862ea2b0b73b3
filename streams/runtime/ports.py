"""The worker data plane's ports: what the checkpoint needs from Kafka and from local state.

Small on purpose (OpenMeter style: the user of an interface declares it). The adapters are
:class:`streams.runtime.kafka_txn.PartitionProducer` (aiokafka) and
:class:`streams.runtime.local_state.PartitionState` (rocksdict); the unit tests drive the
checkpoint with in-memory fakes of both, so an ordering mistake fails in milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Protocol

from streams.core.aggregate import StateReader

__all__ = ["LocalState", "OutRecord", "Transaction"]

# key, value, headers
OutRecord = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


class Transaction(Protocol):
    """One partition's transactional producer (transactional id: app id and partition).

    Every method may raise :class:`streams.errors.PartitionFencedError` when a newer
    owner of the partition has fenced this producer.
    """

    async def begin(self) -> None:
        """Begin a transaction."""
        ...

    async def send(
        self, topic: str, records: Sequence[OutRecord], *, partition: int | None = None
    ) -> Awaitable[int]:
        """Add ``records`` to the transaction, in order; ``partition`` None partitions by
        key. The awaitable gives the offset of the last record once the broker has it."""
        ...

    async def flush(self) -> None:
        """Return once the broker has answered every send so far (acknowledged or failed:
        a failed send fails the commit)."""
        ...

    async def send_offset(self, topic: str, partition: int, next_offset: int,
                          group_id: str) -> None:
        """Commit ``next_offset`` of the input partition for ``group_id`` in the transaction."""
        ...

    async def commit(self) -> None:
        """Commit: everything sent since begin becomes visible to read_committed readers."""
        ...

    async def abort(self) -> None:
        """Abort: nothing sent since begin becomes visible."""
        ...


class LocalState(Protocol):
    """One partition's local state: committed data only, with the changelog offset it holds."""

    @property
    def view(self) -> StateReader: ...

    @property
    def changelog_next(self) -> int: ...

    def apply(self, writes: Iterable[tuple[bytes, bytes | None]], changelog_next: int) -> int:
        """Write ``writes`` in order and ``changelog_next``, atomically."""
        ...
