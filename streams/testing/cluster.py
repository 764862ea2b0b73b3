"""Which Kafka the tests talk to: an external cluster, a Docker container, or local jars.

``kafka_cluster`` tries, in order:

1. ``external``, the bootstrap servers of a cluster someone already runs (the test suite
   passes ``KAFKA_BOOTSTRAP_SERVERS``);
2. the apache/kafka image of the pinned version, when a Docker engine answers;
3. ``KafkaLocal``, the same broker from Maven Central jars (fetched on first use).

All three are single-node KRaft brokers configured by ``node_settings``, so tests see the
same topic defaults (no auto-creation) whichever one runs.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.kafka.local import KafkaLocal, KafkaLocalError, fetch, free_ports, pinned_version
from streams.kafka.local.probe import broker_answers
from streams.kafka.local.process import wait_until
from streams.kafka.local.properties import node_settings

__all__ = ["docker_available", "kafka_cluster"]

_CONTAINER_CONTROLLER_PORT = 9093


def docker_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers a ping within timeout_s."""
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient(timeout=timeout_s).client.ping()
    # Any failure (testcontainers not installed, no socket, engine down, refused
    # permission) means the same thing here: use the local jars instead.
    except Exception:
        return False
    return True


@contextmanager
def kafka_cluster(
    external: str | None = None,
    *,
    use_docker: bool | None = None,
    data_dir: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[str]:
    """Yield bootstrap servers of a ready broker; stop it afterwards if this started it."""
    if external:
        yield external
        return
    if use_docker if use_docker is not None else docker_available():
        with _docker_broker(timeout_s) as bootstrap:
            yield bootstrap
        return
    fetch()
    broker = KafkaLocal(data_dir)
    try:
        yield broker.start(timeout_s)
    finally:
        broker.close()


def _env_name(setting: str) -> str:
    # The apache/kafka image maps KAFKA_<NAME> to a server property: "." -> "_",
    # "_" -> "__", "-" -> "___".
    return "KAFKA_" + setting.replace("_", "__").replace("-", "___").replace(".", "_").upper()


@contextmanager
def _docker_broker(timeout_s: float) -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    host = str(DockerClient().host())
    # The container listens on the same port number it is published on, so the one
    # advertised address is right both for the tests and for the broker calling itself
    # (transaction markers go through the advertised listener).
    (port,) = free_ports(1)
    settings = node_settings(
        listen_host="0.0.0.0",
        advertised_host=host,
        broker_port=port,
        controller_port=_CONTAINER_CONTROLLER_PORT,
        controller_host="localhost",
    )
    container = DockerContainer(f"apache/kafka:{pinned_version()}").with_bind_ports(port, port)
    container.with_env(
        "CLUSTER_ID", base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    )
    for key, value in settings.items():
        container.with_env(_env_name(key), value)
    container.start()
    try:
        try:
            wait_until(lambda: broker_answers(host, port), timeout_s=timeout_s,
                       what=f"apache/kafka container on {host}:{port}", interval_s=0.2)
        except TimeoutError as exc:
            logs = container.get_logs()
            raise KafkaLocalError(
                f"the apache/kafka container did not answer on {host}:{port}\n"
                f"{logs[0].decode(errors='replace')[-4000:]}"
            ) from exc
        yield f"{host}:{port}"
    finally:
        container.stop()
