"""Holes in a partition's offsets: find them, and read the missing records back.

The worker's position in a partition is its state's, not the consumer group's: the
partition record ``P`` holds the last offset fully processed, in the same changelog as
the rest of the state, and the data plane seeks its consumer there. A consumer must never
hand the core a batch that skips records after that position: faust-streaming's consumer
did (it dropped part of a fetch and committed past the hole; 14 consecutive records of
one partition never reached the old worker). The data plane no longer consumes through
Faust, and this check stays as a defence against any consumer that skips.

So, before the core sees a partition's records, :func:`fill_gaps` compares their
offsets with the state's position and with each other. Whatever lies between (the
offsets after ``P.applied`` that were not delivered) is read straight from the broker
with a plain consumer (:class:`BrokerReader`) and put in its place. An offset that has no
data record (a transaction marker, or a record deleted by retention) is simply absent
from what the broker returns, so a legitimate hole costs one fetch and nothing else.
Records at or below the position are kept: the core skips them as replays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.aggregate import SourceRecord

__all__ = ["BrokerReader", "Fetch", "fill_gaps"]

log = logging.getLogger(__name__)

# Reads records [start, end) of one partition; returns those that exist, in order.
Fetch = Callable[[int, int, int], Awaitable[list[SourceRecord]]]


async def fill_gaps(
    partition: int, records: Sequence[SourceRecord], applied: int, fetch: Fetch
) -> tuple[list[SourceRecord], list[tuple[int, int]], int]:
    """Return ``records`` with every hole after ``applied`` filled, the holes as
    ``(first, last)`` offset ranges, and the number of records read into them.

    ``applied`` is the last offset the state holds (-1: none, then the first record
    starts the partition and nothing before it is looked for).
    """
    out: list[SourceRecord] = []
    holes: list[tuple[int, int]] = []
    filled = 0
    expected = applied + 1 if applied >= 0 else None
    for rec in records:
        if expected is not None and rec.offset > expected:
            missing = await fetch(partition, expected, rec.offset)
            log.warning("partition %d: offsets %d..%d were not delivered by the consumer; "
                        "read %d record(s) of them from the broker", partition, expected,
                        rec.offset - 1, len(missing))
            out.extend(missing)
            holes.append((expected, rec.offset - 1))
            filled += len(missing)
        out.append(rec)
        if expected is None or rec.offset >= expected:
            expected = rec.offset + 1
    return out, holes, filled


class BrokerReader:
    """Reads offset ranges of the source topic with its own consumer (no group).

    ``to_record`` turns an aiokafka record into a SourceRecord, as for the agent's.
    """

    def __init__(self, topic: str, connection: dict[str, Any],
                 to_record: Callable[[Any], SourceRecord], timeout_s: float = 60.0) -> None:
        self._topic = topic
        self._connection = connection
        self._to_record = to_record
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def fetch(self, partition: int, start: int, end: int) -> list[SourceRecord]:
        async with self._lock:
            if self._consumer is None:
                self._consumer = AIOKafkaConsumer(
                    **self._connection, group_id=None, enable_auto_commit=False,
                    auto_offset_reset="earliest", client_id="meterstream-gap-reader",
                )
                await self._consumer.start()
            consumer = self._consumer
            tp = TopicPartition(self._topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            out: list[SourceRecord] = []
            deadline = time.monotonic() + self._timeout_s
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self._topic}/{partition} [{start}, {end}) "
                                       f"took over {self._timeout_s} s")
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for msg in batch.get(tp, ()):
                    if start <= msg.offset < end:
                        out.append(self._to_record(msg))
            return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
