"""The worker's view of the compacted customers topic: customer -> terms (plan, thresholds).

Every worker reads every partition of the topic (no consumer group), from the beginning:
the topic is compacted, so it holds one record per customer. :meth:`CustomersTable.start`
returns once the table has read up to the end offsets it found at start, so the first
batch of events is priced with the customer records that existed before it; after that,
a background task follows the topic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.pricing import CustomerTerms, terms_from_record
from streams.kafka.client import read_to_end

__all__ = ["CustomersTable"]

log = logging.getLogger(__name__)

_TERMS_CACHE_MAX = 100_000


class CustomersTable:
    """Customer records by customer id, kept up to date from the customers topic."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self._topic = topic
        self._options = options
        self._records: dict[bytes, bytes] = {}
        self._terms: dict[bytes, CustomerTerms | None] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def get(self, customer: bytes) -> bytes | None:
        return self._records.get(customer)

    def terms(self, customer: str) -> CustomerTerms | None:
        """The customer's terms, or None (no record, or one that is not valid JSON)."""
        raw = self._records.get(customer.encode())
        if raw is None:
            return None
        try:
            return self._terms[raw]
        except KeyError:
            pass
        try:
            record = orjson.loads(raw)
            terms = terms_from_record(record) if isinstance(record, dict) else None
        except (orjson.JSONDecodeError, ArithmeticError, ValueError):
            log.warning("customer record of %r is not valid JSON; using defaults", customer)
            terms = None
        if len(self._terms) > _TERMS_CACHE_MAX:
            self._terms.clear()
        self._terms[raw] = terms
        return terms

    def _apply(self, msgs: list[Any]) -> None:
        for m in msgs:
            if m.key is None:
                continue
            if m.value is None:
                self._records.pop(m.key, None)
            else:
                self._records[m.key] = m.value

    async def start(self, partitions: set[int]) -> None:
        """Read the topic's ``partitions`` up to their current end, then follow them in the
        background."""
        consumer = self._consumer = AIOKafkaConsumer(
            **self._options, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest")
        await consumer.start()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        await read_to_end(consumer, ends, lambda _tp, msgs: self._apply(msgs),
                          max_records=50_000)
        log.info("customers: %d record(s) read from %s", len(self._records), self._topic)
        self._task = asyncio.create_task(self._follow(consumer), name="customers-follow")

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            except Exception as exc:  # the broker comes back; keep following
                log.warning("customers: reading %s failed (%s); retrying", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for msgs in fetched.values():
                self._apply(msgs)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # a failed follower is reported, not re-raised on stop
                log.warning("customers follower had failed", exc_info=True)
        if self._consumer is not None:
            await self._consumer.stop()
