"""Every reach into a private part of aiokafka, in one place, each with a contract test.

meterstream uses aiokafka's public API everywhere else (ruff's SLF rule holds the rest of
the code to that). What remains here has no public equivalent in aiokafka 0.14:

- :func:`partitions_of`: a consumer without a group tracks no topic's metadata until it
  is assigned one, so ``partitions_for_topic`` answers None for a topic it has never
  seen. Asking its client to track the topic and refresh is the only way short of a
  second client.
- :func:`fail_pending_batches`: ``stop()`` waits for queued batches to be delivered; a
  producer whose records are safe elsewhere (the SDK's spool) must be able to stop while
  the broker is gone, failing them instead.
- :func:`started_with_brokers`: a client whose bootstrap is answered with no broker (a
  broker that is still registering itself) starts, then never learns one: aiokafka keeps
  the bootstrap connection but drops it at the first refresh ("Broker id bootstrap not in
  current metadata"), and asks an empty list from then on. The chaos suite caught a
  sink's customers reader that way, taking the customers topic for one without
  partitions. Bootstrapping the client again is the only way short of a new client.

faust-streaming needs no private reach: the worker uses its public App, BootStrategy,
page, timer and service API only (streams/runtime/app.py).

``tests/unit/test_compat.py`` fails when the installed aiokafka lacks what this module
uses, and pins the version range it was checked against (:data:`AIOKAFKA_CHECKED`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, ProducerClosed

from streams.errors import MeterstreamError

__all__ = [
    "AIOKAFKA_CHECKED",
    "BrokerNotReady",
    "fail_pending_batches",
    "partitions_of",
    "started_with_brokers",
]

# The aiokafka versions these reaches were checked against (pyproject pins the same).
AIOKAFKA_CHECKED = ("0.14.",)


def aiokafka_version_checked() -> bool:
    return str(aiokafka.__version__).startswith(AIOKAFKA_CHECKED)


async def partitions_of(consumer: Any, topic: str, *, timeout_s: float = 30.0
                        ) -> list[TopicPartition]:
    """The partitions of ``topic`` for a group-less consumer ([] if it does not exist)."""
    deadline = time.monotonic() + timeout_s
    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:
        client = consumer._client  # noqa: SLF001 - no public way to track a topic
        await client.add_topic(topic)
        await client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await asyncio.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


def fail_pending_batches(producer: Any) -> None:
    """Fail every batch the producer still holds (with ProducerClosed), so that its
    ``stop()`` does not wait for a broker that may be gone."""
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is not None:
        accumulator.fail_all(ProducerClosed())


class BrokerNotReady(MeterstreamError, KafkaConnectionError):  # type: ignore[misc]
    """Kafka answered, but named no broker yet: it is starting (wait for it)."""


def started_with_brokers(owner: Any) -> Callable[[], Awaitable[None]]:
    """A start for ``owner`` (an AIOKafkaConsumer or AIOKafkaProducer) that returns once its
    client knows a broker. The first call runs ``owner.start()``; a call after a client
    that learned no broker bootstraps it again, and raises :class:`BrokerNotReady` while
    the answer still names none."""
    started = False

    async def start_knowing_a_broker() -> None:
        nonlocal started
        if not started:
            await owner.start()
            started = True
        # (the producer's client is public, the consumer's is not)
        client = owner.client if hasattr(owner, "client") else owner._client  # noqa: SLF001
        if not client.cluster.brokers():
            await client.bootstrap()  # KafkaConnectionError if no server answers
            if not client.cluster.brokers():
                raise BrokerNotReady("Kafka answered with no broker in its metadata")

    return start_knowing_a_broker
