"""Contract tests of streams.kafka.compat: the installed aiokafka still has what it reaches for."""

from __future__ import annotations

import asyncio

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.compat import AIOKAFKA_CHECKED, aiokafka_version_checked, fail_pending_batches


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


def test_faust_boots_without_its_kafka_clients() -> None:
    """The worker relies on Faust's public BootStrategy switch: with enable_kafka off, the
    app starts no consumer, producer, conductor or tables (only web, sensors, services)."""
    import faust

    from streams.config import load_settings
    from streams.runtime.app import build_app

    assert faust.__version__.startswith("0.15."), faust.__version__
    components = build_app(load_settings())
    boot = components.app.boot_strategy
    assert list(boot.kafka_consumer()) == [] and list(boot.kafka_producer()) == []
    assert list(boot.kafka_conductor()) == [] and list(boot.tables()) == []
    assert list(boot.web_server())  # the HTTP API is still served
