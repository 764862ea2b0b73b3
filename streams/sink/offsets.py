"""Which input offset may be committed: the commit rule of the sink (pure).

A summary is *finished* when Stripe accepted all of its events (including "already have
it"), when it needed no event (zero value, duplicate id), or when its dead-letter record
was acknowledged by Kafka. Summaries finish out of order (pairs run concurrently, a pair
may be backing off), so per partition we commit only up to the lowest offset that is not
finished: ``commit offset = lowest unfinished offset`` (Kafka's commit offset is the next
offset to read), or one past the highest seen offset when everything is finished. A crash
then replays only unfinished summaries and some finished ones, which is harmless because
identifiers are deterministic and Stripe ignores a repeated identifier.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """Offsets of one partition, in the order they were read (strictly increasing)."""

    def __init__(self) -> None:
        self._open: deque[int] = deque()
        self._finished: set[int] = set()
        self._next: int | None = None  # one past the highest offset seen
        self._committed: int | None = None

    def __len__(self) -> int:
        """Offsets read but not yet committable (finished ones behind an open one count)."""
        return len(self._open)

    def unfinished(self) -> int:
        """Offsets read and not finished."""
        return len(self._open) - len(self._finished)

    def track(self, offset: int) -> None:
        """Record that ``offset`` was read and is now in progress."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} read after {self._next - 1}")
        self._open.append(offset)
        self._next = offset + 1

    def finish(self, offset: int) -> None:
        """Mark ``offset`` finished; idempotent."""
        if not self._open or offset < self._open[0]:
            return
        self._finished.add(offset)
        while self._open and self._open[0] in self._finished:
            self._finished.discard(self._open.popleft())

    def committable(self) -> int | None:
        """The offset to commit (next to read), or None if nothing was read yet."""
        if self._open:
            return self._open[0]
        return self._next

    def to_commit(self) -> int | None:
        """The committable offset if it moved since :meth:`mark_committed`, else None."""
        offset = self.committable()
        if offset is None or offset == self._committed:
            return None
        return offset

    def seen_to(self, position: int) -> None:
        """Every record before ``position`` (the consumer's position) has been tracked: the
        offsets between the last one read and ``position`` hold no record (the commit
        markers of the worker's transactions), so they count as read and finished."""
        if self._next is None or position > self._next:
            self._next = position

    def mark_committed(self, offset: int) -> None:
        self._committed = offset
