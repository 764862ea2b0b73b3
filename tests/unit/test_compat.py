"""Contract tests of streams.kafka.compat: the installed aiokafka still has what it reaches for."""

from __future__ import annotations

import asyncio

import aiokafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.compat import (
    AIOKAFKA_CHECKED,
    BrokerNotReady,
    aiokafka_version_checked,
    fail_pending_batches,
    started_with_brokers,
)


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


def test_a_client_can_be_bootstrapped_again_and_tells_its_brokers() -> None:
    async def check() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
        for client in (consumer._client, producer.client):
            assert callable(client.bootstrap)
            assert client.cluster.brokers() == set()
        await producer.client.close()

    asyncio.run(check())


class _Cluster:
    def __init__(self) -> None:
        self.known: set[int] = set()

    def brokers(self) -> set[int]:
        return self.known


class _Client:
    """An aiokafka client whose bootstraps are answered with no broker ``empty`` times."""

    def __init__(self, empty: int) -> None:
        self.cluster = _Cluster()
        self.empty = empty
        self.bootstraps = 0

    async def bootstrap(self) -> None:
        self.bootstraps += 1
        if self.bootstraps > self.empty:
            self.cluster.known = {1}


class _Owner:
    def __init__(self, empty: int) -> None:
        self._client = _Client(empty)
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1  # aiokafka's start bootstraps once: answered with no broker


def test_a_start_bootstraps_again_until_a_broker_is_named() -> None:
    async def check() -> None:
        owner = _Owner(empty=2)
        start = started_with_brokers(owner)
        for _ in range(2):
            with pytest.raises(BrokerNotReady):
                await start()
        await start()
        assert (owner.starts, owner._client.bootstraps) == (1, 3)
        await start()  # knows a broker: nothing more to do
        assert (owner.starts, owner._client.bootstraps) == (1, 3)

    asyncio.run(check())
