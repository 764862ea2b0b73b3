"""Read a topic back in a test: every partition from its beginning, without a group.

- :func:`read_back`: what the topic holds now, up to each partition's end offset
  (``streams.kafka.client.read_to_end``, the loop the runtime restores with). With the
  default ``read_committed`` that end is the last stable offset, so records of open or
  aborted transactions are not read: what a consumer of the topic would see.
- :func:`read_records`: for output still on its way, read until ``until(records)`` holds
  and nothing new came for ``quiet_s`` (without ``until``: until quiet), failing after
  ``timeout_s`` with what was read.
- :func:`read_topic`: :func:`read_records` of a JSON topic, as dicts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config import KafkaSettings
from streams.kafka.client import connection_options, read_to_end
from streams.kafka.compat import partitions_of

__all__ = ["read_back", "read_records", "read_topic"]

Records = list[Any]
"""aiokafka ConsumerRecords, in partition order, each partition in offset order."""


@asynccontextmanager
async def _from_the_beginning(bootstrap: str, topic: str, kafka: KafkaSettings | None,
                              **options: Any) -> AsyncIterator[tuple[AIOKafkaConsumer,
                                                                     list[TopicPartition]]]:
    """A started group-less consumer assigned every partition of ``topic``, at offset 0.
    ``kafka``: connect with these settings (TLS, SASL) instead of plain ``bootstrap``."""
    connection: dict[str, Any] = (
        connection_options(kafka) if kafka is not None else {"bootstrap_servers": bootstrap}
    )
    consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None, **options)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def read_back(bootstrap: str, topic: str, *, kafka: KafkaSettings | None = None,
                    isolation_level: str = "read_committed") -> Records:
    """Every record of ``topic`` up to the current end of each partition."""
    out: Records = []
    async with _from_the_beginning(bootstrap, topic, kafka,
                                   isolation_level=isolation_level) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        await read_to_end(consumer, ends, lambda _tp, msgs: out.extend(msgs),
                          max_records=10_000)
    return out


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[Records], bool] | None = None,
    quiet_s: float = 3.0,
    timeout_s: float = 300.0,
    kafka: KafkaSettings | None = None,
    describe: Callable[[Records], str] | None = None,
    **options: Any,
) -> Records:
    """Read ``topic`` from the beginning until ``until(records)`` holds (or, without it,
    at once) and nothing new arrived for ``quiet_s``. Raises TimeoutError after
    ``timeout_s``; ``describe(records)``, if given, says in its message what is still
    wrong. ``options`` go to the consumer (e.g. ``isolation_level``)."""
    out: Records = []
    async with _from_the_beginning(bootstrap, topic, kafka, **options) as (consumer, _tps):
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for msgs in batch.values():
                out.extend(msgs)
                if msgs:
                    last_new = time.monotonic()
            done = until(out) if until is not None else True
            if done and time.monotonic() - last_new >= quiet_s:
                return out
            if time.monotonic() > deadline:
                detail = f": {describe(out)}" if describe is not None else ""
                raise TimeoutError(f"{topic}: condition not met after {timeout_s}s "
                                   f"({len(out)} messages read){detail}")


def _doc(record: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(record.value) if record.value else {}
    doc["_partition"] = record.partition
    doc["_offset"] = record.offset
    return doc


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
    quiet_s: float = 3.0,
    timeout_s: float = 300.0,
    kafka: KafkaSettings | None = None,
    describe: Callable[[list[dict[str, Any]]], str] | None = None,
) -> list[dict[str, Any]]:
    """:func:`read_records` of a JSON topic: each message a dict, with ``_partition`` and
    ``_offset`` added; ``until`` and ``describe`` see those dicts."""
    docs: list[dict[str, Any]] = []

    def decoded(records: Records) -> list[dict[str, Any]]:
        docs.extend(_doc(r) for r in records[len(docs):])
        return docs

    records = await read_records(
        bootstrap, topic, quiet_s=quiet_s, timeout_s=timeout_s, kafka=kafka,
        until=None if until is None else (lambda records: until(decoded(records))),
        describe=None if describe is None else (lambda records: describe(decoded(records))))
    return decoded(records)
