"""Contract tests of streams.compat: the installed aiokafka still has what it reaches for."""

from __future__ import annotations

import asyncio

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.compat import AIOKAFKA_CHECKED, aiokafka_version_checked, fail_pending_batches


def test_installed_aiokafka_is_a_checked_version() -> None:
    assert aiokafka_version_checked(), (aiokafka.__version__, AIOKAFKA_CHECKED)


def test_a_consumer_client_can_track_a_topic_and_refresh() -> None:
    async def check() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
        client = consumer._client
        assert callable(client.add_topic) and callable(client.force_metadata_update)

    asyncio.run(check())


def test_a_producer_can_fail_its_pending_batches() -> None:
    async def check() -> None:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started
        assert callable(producer._message_accumulator.fail_all)
        fail_pending_batches(producer)  # nothing pending: a no-op

    asyncio.run(check())
