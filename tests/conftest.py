"""Shared fixtures: one Kafka broker per test session, and fresh topics per test.

The broker is, in order: the cluster at KAFKA_BOOTSTRAP_SERVERS, an apache/kafka
container when a Docker engine answers, or the pinned broker from Maven Central jars
(streams.kafka.local). ``kafka_sasl_ssl`` is a second, local broker with a
SASL_SSL listener, started by the first test that asks for it. Tests under
tests/integration and tests/chaos are marked ``integration`` (and ``chaos``) from their
location.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from streams.kafka.local import KafkaLocal, fetch
from streams.testing.cluster import kafka_cluster
from streams.testing.topics import TopicFactory

# No time limit per example: speed is measured in benchmarks/, never in tests, and a
# 2-core machine running a broker alongside would make any deadline flaky.
hypothesis_settings.register_profile("meterstream", deadline=None)
hypothesis_settings.load_profile("meterstream")

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(_TESTS).parts if item.path.is_relative_to(_TESTS) else ()
        if parts[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        elif parts[:1] == ("chaos",):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a ready single-node broker shared by the whole session."""
    with kafka_cluster(os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None) as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """``await topic_factory(partitions=3, compacted=True)`` -> a topic no other test uses."""
    return TopicFactory(kafka_bootstrap, hint=request.node.name)


@pytest.fixture(scope="session")
def kafka_sasl_ssl() -> Iterator[KafkaLocal]:
    """A second local broker with a SASL_SSL (SCRAM) listener and a throwaway CA.

    Clients use ``sasl_bootstrap_servers``, ``ca_file``, ``sasl_username`` and
    ``sasl_password``; its PLAINTEXT listener is for nothing but the broker itself.
    """
    fetch()
    with KafkaLocal(sasl_ssl=True, heap_mb=384) as broker:
        yield broker
