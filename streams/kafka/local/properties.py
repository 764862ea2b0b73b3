"""The local broker's settings: server.properties and the JVM's options.

``node_settings`` is a single combined KRaft node; the local broker and the Docker one
(streams.testing.cluster) both use it, so tests see the same broker whichever runs.
``local_settings`` adds what the local broker needs on top: its data dir and, with TLS,
the SASL_SSL listener (see :mod:`streams.kafka.local.tls`).
"""

from __future__ import annotations

from pathlib import Path

from streams.kafka.local.jars import is_kafka3
from streams.kafka.local.process import LOOPBACK
from streams.kafka.local.tls import SASL_MECHANISMS

__all__ = ["jvm_options", "local_settings", "node_settings", "write_properties"]


def node_settings(
    *,
    listen_host: str,
    advertised_host: str,
    broker_port: int,
    controller_port: int,
    controller_host: str = LOOPBACK,
) -> dict[str, str]:
    """server.properties of a single combined KRaft node, tuned for tests on small machines.

    Topics are never auto-created: tests and the app create theirs explicitly (faust
    creates its changelog topics through the admin API). One partition for the offsets
    and transaction state topics makes the first group join and transaction fast.
    """
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller_host}:{controller_port}",
        "listeners": f"PLAINTEXT://{listen_host}:{broker_port},"
        f"CONTROLLER://{listen_host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{advertised_host}:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The cleaner's default 128 MiB dedupe buffer alone would take a quarter of the heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        # Two cores: the defaults (3 network, 8 I/O threads) only add contention.
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


def local_settings(data_dir: Path, *, broker_port: int, controller_port: int,
                   sasl_port: int | None = None, keystore: Path | None = None,
                   keystore_password: str = "") -> dict[str, str]:
    """The local broker's server.properties: ``node_settings`` on loopback, its data in
    ``data_dir/data``, and with ``sasl_port`` a SASL_SSL listener there whose certificate
    is in ``keystore`` (PKCS12)."""
    settings = node_settings(listen_host=LOOPBACK, advertised_host=LOOPBACK,
                             broker_port=broker_port, controller_port=controller_port)
    settings["log.dirs"] = str(data_dir / "data")
    settings["metadata.log.dir"] = str(data_dir / "data")
    if sasl_port is None:
        return settings
    assert keystore is not None
    prefix = "listener.name.sasl_ssl."
    sasl_listener = f"SASL_SSL://{LOOPBACK}:{sasl_port}"
    settings.update({
        "listeners": f"{settings['listeners']},{sasl_listener}",
        "advertised.listeners": f"{settings['advertised.listeners']},{sasl_listener}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        prefix + "ssl.keystore.type": "PKCS12",
        prefix + "ssl.keystore.location": str(keystore),
        prefix + "ssl.keystore.password": keystore_password,
        prefix + "ssl.key.password": keystore_password,
        prefix + "ssl.client.auth": "none",
    })
    for mechanism in SASL_MECHANISMS:
        settings[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    return settings


def write_properties(path: Path, settings: dict[str, str]) -> None:
    lines = [f"{k}={v}" for k, v in settings.items()]
    path.write_text("# written by streams.kafka.local\n" + "\n".join(lines) + "\n")


def jvm_options(*, data_dir: Path, home: Path, version: str, heap_mb: int,
                quick_jit: bool) -> list[str]:
    """The JVM's options: a small heap and collector, logs under ``data_dir/logs``, and
    with ``quick_jit`` the JIT limited to C1 (faster start, lower peak throughput)."""
    opts = [
        f"-Xmx{heap_mb}m",
        "-Xms64m",
        # A single-threaded collector: smallest footprint, and pauses on a heap this
        # size stay in the low milliseconds.
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:-UsePerfData",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data_dir / 'logs'}",
    ]
    if quick_jit:
        opts.append("-XX:TieredStopAtLevel=1")
    if is_kafka3(version):
        opts.append(f"-Dlog4j.configuration=file:{home / 'log4j.properties'}")
    else:
        opts.append(f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}")
    return opts
