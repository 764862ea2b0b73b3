"""The local broker's jars: Apache Kafka from Maven Central, at the pinned version.

The jars come through deploy/kafka-local/pom.xml, whose ``kafka.version`` property is the
pinned broker version, read here so that it is set in one place. ``fetch`` copies the
runtime jars into ``lib/<version>/`` next to the pom; several versions can sit side by
side (docs/kafka-local.md compares them).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from hashlib import sha256
from pathlib import Path

from streams.errors import MeterstreamError

__all__ = ["KafkaLocalError", "default_home", "fetch", "is_kafka3", "pinned_version"]

_STAMP = ".fetched"


class KafkaLocalError(MeterstreamError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def default_home() -> Path:
    """deploy/kafka-local of the source checkout this module lives in."""
    return Path(__file__).resolve().parents[3] / "deploy" / "kafka-local"


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
