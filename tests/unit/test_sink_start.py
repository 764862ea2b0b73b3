"""The sink's Kafka clients wait for a broker that is down, and give up on one that is up
but refuses them past a grace (aiokafka reports both as "unable to bootstrap")."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.kafka.local.process import free_ports
from streams.sink.kafka_io import start_when_reachable
from streams.util.backoff import Backoff
from tests.unit.test_compat import _Client

FAST = Backoff(base_s=0.01, cap_s=0.02)


class FlakyStart:
    """An aiokafka client whose ``start`` fails to bootstrap ``failures`` times, then
    knows a broker once its bootstraps were answered with none ``empty`` times."""

    def __init__(self, failures: int, empty: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self._client = _Client(empty)

    async def start(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
        self._client.cluster.known = {1} if not self._client.empty else set()


async def test_a_broker_that_is_down_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    (closed_port,) = free_ports(1)  # nothing listens there
    start = FlakyStart(failures=5)
    with caplog.at_level("INFO", logger="streams.sink.kafka_io"):
        await start_when_reachable(start, "test client", f"127.0.0.1:{closed_port}", FAST)
    assert start.calls == 6
    messages = [r.getMessage() for r in caplog.records]
    assert any("kafka unreachable" in m for m in messages)
    assert any("reachable after 5 failed attempt(s)" in m for m in messages)


async def test_a_broker_that_answers_but_refuses_is_an_error() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    start = FlakyStart(failures=100)
    try:
        with pytest.raises(KafkaConnectionError):
            await start_when_reachable(start, "test client", f"127.0.0.1:{port}", FAST,
                                       refused_grace_s=0.0)
    finally:
        server.close()
        await server.wait_closed()
    assert start.calls == 1


async def test_a_refusal_is_retried_for_the_grace_then_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    """A broker that accepts connections and closes them (starting or stopping) is given
    the grace; one that goes on refusing past it is an error."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        starting = FlakyStart(failures=3)
        with caplog.at_level("INFO", logger="streams.sink.kafka_io"):
            await start_when_reachable(starting, "test client", f"127.0.0.1:{port}", FAST,
                                       refused_grace_s=30.0)
        assert starting.calls == 4
        messages = [r.getMessage() for r in caplog.records]
        assert any("accepts connections but the client could not bootstrap" in m
                   for m in messages)
        refusing = FlakyStart(failures=10**6)
        began = asyncio.get_running_loop().time()
        with pytest.raises(KafkaConnectionError):
            await start_when_reachable(refusing, "test client", f"127.0.0.1:{port}", FAST,
                                       refused_grace_s=0.2)
        assert refusing.calls > 1
        assert asyncio.get_running_loop().time() - began >= 0.2
    finally:
        server.close()
        await server.wait_closed()


async def test_a_broker_that_names_no_broker_yet_is_waited_for() -> None:
    """Kafka that answers with no broker in its metadata is starting: waited for as if
    down, without the refusal's grace, though its port accepts connections."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = FlakyStart(failures=0, empty=5)
    try:
        await start_when_reachable(client, "test client", f"127.0.0.1:{port}", FAST,
                                   refused_grace_s=0.0)
    finally:
        server.close()
        await server.wait_closed()
    # Started once; bootstrapped again until the answer named a broker.
    assert (client.calls, client._client.bootstraps) == (1, 6)
