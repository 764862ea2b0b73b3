"""Shared fixtures: one Kafka broker per test session, and fresh topics per test.

The broker is, in order: the cluster at KAFKA_BOOTSTRAP_SERVERS, an apache/kafka
container when a Docker engine answers, or the pinned broker from Maven Central jars
(streams.testing.kafka_local). Tests under tests/integration and tests/chaos are marked
``integration`` (and ``chaos``) from their location.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.testing.cluster import kafka_cluster
from streams.testing.topics import TopicFactory

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
