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

faust-streaming needs no private reach: the worker uses its public App, BootStrategy,
page, timer and service API only (streams/runtime/app.py).

``tests/unit/test_compat.py`` fails when the installed aiokafka lacks what this module
uses, and pins the version range it was checked against (:data:`AIOKAFKA_CHECKED`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from aiokafka.errors import ProducerClosed

__all__ = ["AIOKAFKA_CHECKED", "fail_pending_batches", "partitions_of"]

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
