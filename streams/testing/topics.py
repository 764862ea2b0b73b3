"""Create uniquely named topics for a test, and wait until they can take writes.

The brokers the tests use never auto-create topics, so every test creates its own, under
a fresh name, and no two tests (or two runs against one external cluster) share one.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from streams.kafka.local import KafkaLocalError

__all__ = ["TopicFactory", "create_topic", "unique_topic_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def unique_topic_name(hint: str = "test") -> str:
    """``<hint>-<12 hex>``: the hint (e.g. the test's name) makes broker logs readable."""
    stem = _UNSAFE.sub("-", hint).strip("-.")[:80] or "test"
    return f"{stem}-{uuid.uuid4().hex[:12]}"


async def create_topic(
    bootstrap_servers: str,
    name: str,
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    compacted: bool = False,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> str:
    """Create ``name`` and return it once every partition has a leader.

    Returning only when the metadata shows a leader per partition spares the first
    produce a round of NotLeaderForPartition retries right after creation.
    """
    topic_configs = dict(configs or {})
    if compacted:
        topic_configs["cleanup.policy"] = "compact"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor, topic_configs=topic_configs)],
            timeout_ms=int(timeout_s * 1000),
        )
        for topic_error in response.topic_errors:
            code = topic_error[1]
            if code != 0:
                detail = topic_error[2] if len(topic_error) > 2 else ""
                raise KafkaLocalError(
                    f"creating topic {name!r} failed: {for_code(code).__name__} {detail or ''}"
                )
        deadline = time.monotonic() + timeout_s
        while not await _all_partitions_led(admin, name, partitions):
            if time.monotonic() >= deadline:
                raise KafkaLocalError(f"topic {name!r} has no leader for every partition yet")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    return name


async def _all_partitions_led(admin: AIOKafkaAdminClient, name: str, partitions: int) -> bool:
    described = await admin.describe_topics([name])
    for topic in described:
        if topic["topic"] == name and topic["error_code"] == 0:
            led = [p for p in topic["partitions"] if p["error_code"] == 0 and p["leader"] >= 0]
            return len(led) == partitions
    return False


class TopicFactory:
    """``await factory(partitions=3, compacted=True)`` -> the name of a fresh topic."""

    def __init__(self, bootstrap_servers: str, hint: str = "test") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.hint = hint
        self.created: list[str] = []

    async def __call__(
        self,
        partitions: int = 1,
        compacted: bool = False,
        *,
        configs: Mapping[str, str] | None = None,
    ) -> str:
        name = await create_topic(
            self.bootstrap_servers,
            unique_topic_name(self.hint),
            partitions=partitions,
            compacted=compacted,
            configs=configs,
        )
        self.created.append(name)
        return name
