"""The local Kafka broker: it starts, serves the clients meterstream uses, restarts in
place, and stops cleanly.

The first tests use the session broker (whichever kafka_bootstrap provides) and pin the
client features the pipeline relies on, so a Kafka version bump that breaks one fails
here first. The KafkaLocal tests start brokers of their own from the jars.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.local import KafkaLocal, KafkaLocalError, default_home, fetch
from streams.testing.topics import TopicFactory, create_topic, unique_topic_name

SCRIPT = default_home() / "kafka-local"


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, count: int, *, group: str | None = None, **kwargs: object
) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kwargs,
    )
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, messages in batches.items():
                    got.extend((tp.partition, m.key, m.value) for m in messages)
        if group is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            return False
    return True


def _process_exists(pid: int) -> bool:
    """False for a process that is gone or a zombie no one has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def jars() -> None:
    fetch()


@pytest.fixture
def own_broker(jars: None, tmp_path: Path) -> Iterator[KafkaLocal]:
    broker = KafkaLocal(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.close()


async def test_idempotent_round_trip_through_a_group(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory(partitions=3)
    sent = [(f"c-{i % 7}".encode(), f"v{i}".encode()) for i in range(60)]
    await _produce(kafka_bootstrap, topic, sent)

    got = await _consume(kafka_bootstrap, topic, len(sent), group=unique_topic_name("group"))

    assert sorted((k, v) for _, k, v in got) == sorted(sent)
    # Per key, order is preserved and every key sits on one partition.
    for key in {k for k, _ in sent}:
        assert [v for _, k, v in got if k == key] == [v for k, v in sent if k == key]
        assert len({p for p, k, _ in got if k == key}) == 1


async def test_read_committed_sees_only_committed_transactions(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    source, sink = await topic_factory(), await topic_factory(compacted=True)
    group = unique_topic_name("txn-group")
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=unique_topic_name("txn")
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(sink, b"kept-1", key=b"a")
            # Offsets committed inside the transaction go through the group coordinator.
            await producer.send_offsets_to_transaction({TopicPartition(source, 0): 1}, group)
        with pytest.raises(RuntimeError, match="abort"):
            async with producer.transaction():
                await producer.send(sink, b"aborted", key=b"b")
                raise RuntimeError("abort")
        async with producer.transaction():
            await producer.send(sink, b"kept-2", key=b"c")
    finally:
        await producer.stop()

    got = await _consume(kafka_bootstrap, sink, 2, isolation_level="read_committed")

    assert [v for _, _, v in got] == [b"kept-1", b"kept-2"]


async def test_creating_an_existing_topic_fails_loudly(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory()
    with pytest.raises(KafkaLocalError, match="TopicAlreadyExists"):
        await create_topic(kafka_bootstrap, topic)


async def test_restart_keeps_data_ports_and_bootstrap(own_broker: KafkaLocal) -> None:
    bootstrap = await asyncio.to_thread(own_broker.start)
    first_pid = own_broker.pid
    topic = await create_topic(bootstrap, unique_topic_name("restart"), partitions=2)
    before = [(f"k{i}".encode(), f"before-{i}".encode()) for i in range(10)]
    await _produce(bootstrap, topic, before)

    assert await asyncio.to_thread(own_broker.restart) == bootstrap

    assert own_broker.pid not in (None, first_pid)
    after = [(b"k0", b"after")]
    await _produce(bootstrap, topic, after)
    got = await _consume(bootstrap, topic, len(before) + 1)
    assert sorted((k, v) for _, k, v in got) == sorted(before + after)


async def test_stop_is_clean(own_broker: KafkaLocal) -> None:
    await asyncio.to_thread(own_broker.start)
    pid = own_broker.pid
    assert pid is not None
    state = json.loads(own_broker.state_file.read_text())
    ports = [state["broker_port"], state["controller_port"]]
    assert not any(_port_is_free(p) for p in ports)

    await asyncio.to_thread(own_broker.stop)

    assert not own_broker.is_running
    assert not _process_exists(pid)
    assert all(_port_is_free(p) for p in ports)
    assert not own_broker.pid_file.exists()
    assert json.loads(own_broker.state_file.read_text())["pid"] is None
    assert "shut down completely" in own_broker.log_file.read_text()


def test_start_on_a_taken_port_reports_the_broker_log(own_broker: KafkaLocal) -> None:
    own_broker.start()
    broker_port = int(own_broker.bootstrap_servers.rsplit(":", 1)[1])
    own_broker.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", broker_port))
        squatter.listen()
        with pytest.raises(KafkaLocalError, match="Address already in use"):
            own_broker.start()
    assert not own_broker.is_running


def test_command_line_start_status_stop(jars: None, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def kafka_local(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args, "--dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started = kafka_local("start")
    try:
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.strip()
        assert bootstrap.startswith("127.0.0.1:")
        status = kafka_local("status")
        assert status.returncode == 0
        assert status.stdout.startswith(f"running {bootstrap} ")
        pid = json.loads((run_dir / "state.json").read_text())["pid"]
    finally:
        stopped = kafka_local("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert kafka_local("status").returncode == 3
    assert not _process_exists(pid)
