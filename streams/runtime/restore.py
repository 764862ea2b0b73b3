"""Bring local state up to its changelog: the tail after a restart, everything when cold.

A partition's database records the first changelog offset it does not hold
(:attr:`PartitionState.changelog_next`). Restoring reads the changelog partition from
there to its end, read_committed (aborted transactions of a fenced owner are skipped),
in large fetches, and applies each fetch as one RocksDB write batch that also moves
``changelog_next``: a restore cut short by a crash resumes where it stopped.

The end is taken after this worker's transactional producer for the partition has
started: that fenced every older owner and aborted its open transaction, so no
transaction is pending on the partition and the end offset is final.

Local state is wiped and restored cold when it cannot be trusted to be a prefix of the
changelog: when it claims more than the changelog holds (the topic was recreated), or
when it is older than the changelog's ``delete.retention.ms`` (compaction may have removed
a tombstone it never saw).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.admin import CHANGELOG_DELETE_RETENTION_MS
from streams.kafka.client import read_to_end
from streams.runtime.local_state import PartitionState

__all__ = ["restore"]

log = logging.getLogger(__name__)

# How old local state may be and still be restored from the changelog's tail: a day's
# margin below the changelog's delete.retention.ms.
_TRUST_LOCAL_MS = CHANGELOG_DELETE_RETENTION_MS - 86_400_000
_FETCH_RECORDS = 50_000


async def restore(
    states: Mapping[int, PartitionState], *, topic: str, options: dict[str, Any]
) -> dict[int, int]:
    """Restore every partition of ``states`` to the end of its changelog partition.

    Returns the number of changelog records applied per partition.
    """
    applied = dict.fromkeys(states, 0)
    if not states:
        return applied
    consumer = AIOKafkaConsumer(
        **options,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): state for p, state in states.items()}
        consumer.assign(list(tps))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(tps))
        now_ms = int(time.time() * 1000)
        todo: dict[TopicPartition, PartitionState] = {}
        for tp, state in tps.items():
            start = state.changelog_next
            written = state.written_ms
            if start > ends[tp] or (written is not None and now_ms - written > _TRUST_LOCAL_MS):
                log.warning("partition %d: local state (changelog offset %d, written %s) is "
                            "not a prefix of the changelog (end %d); restoring it cold",
                            tp.partition, start, written, ends[tp])
                state.wipe()
                start = 0
            if start < ends[tp]:
                consumer.seek(tp, start)
                todo[tp] = state
        started = time.perf_counter()

        def apply(tp: TopicPartition, msgs: list[Any]) -> None:
            todo[tp].apply(((m.key, m.value) for m in msgs), msgs[-1].offset + 1)
            applied[tp.partition] += len(msgs)

        await read_to_end(consumer, {tp: ends[tp] for tp in todo}, apply,
                          max_records=_FETCH_RECORDS)
        total = sum(applied.values())
        if total:
            elapsed = time.perf_counter() - started
            log.info("restored %d changelog record(s) of %d partition(s) in %.2f s",
                     total, len(states), elapsed)
    finally:
        await consumer.stop()
    return applied
