"""Customer -> the engine's customer id, from the compacted customers topic, and the
summaries that wait for a mapping.

The engine's customer id is ``stripe_customer_id`` for Stripe; for Metronome it is
``metronome_customer_id`` or, when that is absent, ``metronome_ingest_alias`` (Metronome
takes either as an event's ``customer_id``).

A summary whose customer has no id for the sink's engine yet is *held*: kept in memory,
never dropped and never committed past (its offset stays open, see offsets.py), and
released to the dispatcher when the mapping arrives or on the periodic re-check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config import KafkaSettings
from streams.kafka.client import connection_options
from streams.sink.kafka_io import partitions_of, start_when_reachable

__all__ = ["ENGINE_ID_FIELDS", "CustomerDirectory", "CustomersReader", "HeldSummaries",
           "parse_customer_record"]

log = logging.getLogger(__name__)
T = TypeVar("T")


ENGINE_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "stripe": ("stripe_customer_id",),
    "metronome": ("metronome_customer_id", "metronome_ingest_alias"),
}


def parse_customer_record(
    key: bytes | None, value: bytes | None, engine: str = "stripe"
) -> tuple[str, str | None] | None:
    """(customer, the engine's customer id or None) of a customers-topic record; None if
    unusable.

    A tombstone (null value) unmaps the customer. A record without an id for ``engine``
    (see :data:`ENGINE_ID_FIELDS`, first present wins) maps to None as well: that
    customer is not billed through that engine (yet).
    """
    fields = ENGINE_ID_FIELDS[engine]
    if value is None:
        if key is None:
            return None
        return key.decode("utf-8", "replace"), None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("schema") != "customer.v1":
        return None
    customer = obj.get("customer")
    if not isinstance(customer, str) or not customer:
        return None
    for name in fields:
        engine_id = obj.get(name)
        if isinstance(engine_id, str) and engine_id:
            return customer, engine_id
    return customer, None


class CustomerDirectory:
    """The current mapping; ``on_mapped(customer)`` fires when a customer gains an id."""

    def __init__(self, on_mapped: Callable[[str], None] | None = None) -> None:
        self._ids: dict[str, str] = {}
        self.on_mapped = on_mapped

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, customer: str) -> str | None:
        return self._ids.get(customer)

    def customers(self) -> list[str]:
        """Customers that have a Stripe id."""
        return list(self._ids)

    def apply(self, customer: str, stripe_customer_id: str | None) -> None:
        if stripe_customer_id is None:
            self._ids.pop(customer, None)
            return
        newly = customer not in self._ids
        self._ids[customer] = stripe_customer_id
        if newly and self.on_mapped is not None:
            self.on_mapped(customer)


class HeldSummaries(Generic[T]):
    """Items waiting for their customer's mapping, per customer in arrival order."""

    def __init__(self) -> None:
        self._by_customer: dict[str, list[T]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def customers(self) -> list[str]:
        return list(self._by_customer)

    def hold(self, customer: str, item: T) -> None:
        self._by_customer.setdefault(customer, []).append(item)
        self._count += 1

    def has(self, customer: str) -> bool:
        return customer in self._by_customer

    def release(self, customer: str) -> list[T]:
        items = self._by_customer.pop(customer, [])
        self._count -= len(items)
        return items

    def drop(self, keep: Callable[[T], bool]) -> int:
        """Forget items for which ``keep`` is False (partition revoked); returns how many."""
        dropped = 0
        for customer in list(self._by_customer):
            items = self._by_customer[customer]
            kept = [i for i in items if keep(i)]
            dropped += len(items) - len(kept)
            if kept:
                self._by_customer[customer] = kept
            else:
                del self._by_customer[customer]
        self._count -= dropped
        return dropped

    def __iter__(self) -> Iterator[T]:
        for items in self._by_customer.values():
            yield from items


class CustomersReader:
    """Follows the customers topic from its beginning into a :class:`CustomerDirectory`.

    Every partition is assigned (no consumer group: each sink needs the whole mapping).
    :attr:`ready` is set once the offsets that were the end at start have been read, so
    the sink does not hold summaries of customers whose mapping is simply not loaded yet.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, directory: CustomerDirectory, *, client_id: str,
        engine: str = "stripe",
    ) -> None:
        self.topic = topic
        self.engine = engine
        self.directory = directory
        self.ready = asyncio.Event()
        self._servers = kafka.bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            **connection_options(kafka),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    async def run(self) -> None:
        """Read forever (until cancelled); the consumer is closed on the way out."""
        consumer = self._consumer
        await start_when_reachable(consumer, "customers reader", self._servers)
        try:
            tps = await partitions_of(consumer, self.topic)
            if not tps:
                log.warning("customers topic %s has no partitions; no customer is mapped",
                            self.topic)
                self.ready.set()
                return
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            behind = {tp for tp in tps if ends[tp] > 0}
            if not behind:
                self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batch.values():
                    for record in records:
                        parsed = parse_customer_record(record.key, record.value, self.engine)
                        if parsed is None:
                            log.warning("unusable customer record partition=%d offset=%d",
                                        record.partition, record.offset)
                            continue
                        self.directory.apply(*parsed)
                if behind:
                    for tp in list(behind):
                        if await consumer.position(tp) >= ends[tp]:
                            behind.discard(tp)
                    if not behind:
                        log.info("customers loaded: %d mapped", len(self.directory))
                        self.ready.set()
        finally:
            await consumer.stop()
