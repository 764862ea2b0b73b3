"""One partition's batch, from fetched records to committed local state: the commit order.

:func:`commit_batch` runs these steps, in this order, and nothing else:

1. **core**: the pure core turns the batch into state writes and outputs, reading the
   partition's local state (which holds committed data only). No I/O.
2. **begin** the partition's Kafka transaction (its producer's transactional id is the
   app id and the partition, so only the partition's current owner can commit one).
3. **produce** the outputs (summaries, alerts, dead letters, each to its topic, keyed by
   customer) and the state changelog records (the core's writes, in their order, to the
   same partition of the changelog topic), and wait for the broker's answers.
4. **offsets**: the input position (last record + 1) joins the transaction, for the
   worker's consumer group. (A *sweep* batch has no records: it only emits the finals of
   windows the watermark has already passed, and leaves the input position as it is.)
5. **commit**: outputs, changelog and input position become visible together to every
   read_committed reader (the sink, ``alerts tail``, a restore), or none of them does.
6. **local**: RocksDB gets the batch's writes and the changelog offset they reach, in one
   atomic write batch.

Why it is safe (docs/exactly-once.md has the whole argument):

- Before step 5 nothing is visible and no local state changed: a crash, an error or a
  fence leaves the partition exactly as it was, and the batch is read again from the
  committed position.
- Step 6 follows step 5, so local state never holds what the changelog does not. A crash
  between 5 and 6 leaves local state one batch behind the changelog; the next start
  restores the changelog tail past the offset recorded in step 6 and catches up.
- A worker that lost the partition cannot pass step 5: the new owner's producer fenced
  its transactional id, so its begin, sends or commit raise
  :class:`~streams.errors.PartitionFencedError`, and it drops the partition without
  writing anything.

This function neither retries nor aborts: the data plane decides what a failure means
(:mod:`streams.runtime.dataplane`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from itertools import repeat

from streams.core.aggregate import Aggregator, BatchResult, SourceRecord, TermsLookup
from streams.runtime.ports import LocalState, Transaction
from streams.runtime.records import output_records

__all__ = ["BatchTopics", "commit_batch"]


@dataclass(frozen=True, slots=True)
class BatchTopics:
    """Where a batch's records go, and the group its input position is committed for."""

    events: str
    changelog: str
    summaries: str
    alerts: str
    dlq: str
    group_id: str


async def commit_batch(
    *,
    partition: int,
    records: Sequence[SourceRecord],
    core: Aggregator,
    state: LocalState,
    txn: Transaction,
    topics: BatchTopics,
    now_ms: int,
    terms: TermsLookup,
) -> BatchResult:
    """Process one partition's batch and commit it (steps 1-6 above); return the result.

    ``records`` may be empty: a sweep batch (see step 4)."""
    # 1. core
    result = core.process(partition, records, state.view, now_ms=now_ms, terms=terms)
    keys = [key.encode() for key, _value in result.writes]
    values = [value for _key, value in result.writes]
    changelog = list(zip(keys, values, repeat(()), strict=False))
    summaries, alerts, dead = output_records(
        result, events_topic=topics.events, partition=partition, now_ms=now_ms)
    # 2. begin
    await txn.begin()
    # 3. produce: outputs, then the changelog
    acks: list[Awaitable[int]] = []
    for topic, out in ((topics.summaries, summaries), (topics.alerts, alerts),
                       (topics.dlq, dead)):
        if out:
            acks.append(await txn.send(topic, out, partition=None))
    changelog_ack = await txn.send(topics.changelog, changelog,
                                   partition=partition)
    # The offsets join only once the broker has answered the sends. Joining them adds the
    # group's offsets partition to the transaction, and a produce request the broker
    # verifies meanwhile (KIP-890) finds the transaction mid-change: it is refused as
    # NOT_ENOUGH_REPLICAS (KAFKA-15459) and retried, a round trip and a backoff later.
    await txn.flush()
    # 4. offsets
    if records:
        await txn.send_offset(topics.events, partition, records[-1].offset + 1,
                              topics.group_id)
    # 5. commit (it waits for every send; one that failed fails the commit)
    await txn.commit()
    last_changelog_offset = await changelog_ack
    for ack in acks:
        await ack
    # 6. local state
    state.apply(zip(keys, values, strict=True), last_changelog_offset + 1)
    return result
