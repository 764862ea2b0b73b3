"""What a local broker is made of: jars from Maven Central, its settings, its ports.

The jars come through deploy/kafka-local/pom.xml, whose ``kafka.version`` property is the
pinned broker version, read here so that it is set in one place. ``fetch`` copies the
runtime jars into ``lib/<version>/`` next to the pom; several versions can sit side by
side (docs/kafka-local.md compares them). ``node_settings`` is shared by the local broker
and the Docker one, so tests see the same broker whichever runs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from hashlib import sha256
from pathlib import Path

from streams.errors import MeterstreamError

__all__ = [
    "LOOPBACK",
    "KafkaLocalError",
    "default_home",
    "fetch",
    "free_ports",
    "is_kafka3",
    "node_settings",
    "pinned_version",
]

LOOPBACK = "127.0.0.1"
_STAMP = ".fetched"


class KafkaLocalError(MeterstreamError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def default_home() -> Path:
    """deploy/kafka-local of the source checkout this module lives in."""
    return Path(__file__).resolve().parents[2] / "deploy" / "kafka-local"


def pinned_version(home: Path | None = None) -> str:
    """The ``kafka.version`` property of deploy/kafka-local/pom.xml: the one place it is set."""
    pom = (home or default_home()) / "pom.xml"
    try:
        root = ET.parse(pom).getroot()  # noqa: S314 - our own checked-in pom, not input
    except (OSError, ET.ParseError) as exc:
        raise KafkaLocalError(f"cannot read the pinned Kafka version from {pom}: {exc}") from exc
    node = root.find(
        "{http://maven.apache.org/POM/4.0.0}properties/"
        "{http://maven.apache.org/POM/4.0.0}kafka.version"
    )
    if node is None or not (node.text or "").strip():
        raise KafkaLocalError(f"{pom} has no <kafka.version> property")
    return (node.text or "").strip()


def is_kafka3(version: str) -> bool:
    """Kafka 3.x logs through log4j 1.x (reload4j); 4.x through log4j2."""
    return version.split(".", 1)[0] == "3"


def fetch(version: str | None = None, *, home: Path | None = None, maven: str = "mvn") -> Path:
    """Copy the broker's runtime jars into ``home/lib/<version>/`` and return that dir.

    Idempotent: a stamp file records the version and the pom's hash, and a matching stamp
    skips Maven entirely. A changed pom or a half-finished copy fetches again from scratch
    so that no stale jar stays on the classpath.
    """
    home = home or default_home()
    version = version or pinned_version(home)
    lib = home / "lib" / version
    pom = home / "pom.xml"
    stamp = f"kafka_2.13 {version}\npom sha256 {sha256(pom.read_bytes()).hexdigest()}\n"
    stamp_file = lib / _STAMP
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return lib
    if shutil.which(maven) is None:
        raise KafkaLocalError(f"{maven!r} not found; install Maven (Debian: apt-get install maven)")
    shutil.rmtree(lib, ignore_errors=True)
    cmd = [
        maven,
        "-B",
        "-q",
        "-f",
        str(pom),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={lib}",
    ]
    if is_kafka3(version):
        cmd.append("-Preload4j")  # 3.x logs through log4j 1.x; 4.x through log4j2
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (lib / f"kafka_2.13-{version}.jar").is_file():
        raise KafkaLocalError(
            f"fetching Kafka {version} failed (exit {done.returncode}):\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    stamp_file.write_text(stamp)
    return lib


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


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports that were free a moment ago."""
    # All sockets stay open until every port is chosen, so the n ports are distinct.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
