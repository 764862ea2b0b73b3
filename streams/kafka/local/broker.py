"""A real single-node Apache Kafka broker (KRaft, combined broker+controller), no Docker.

The broker is Apache Kafka's own jars from Maven Central, resolved by
``deploy/kafka-local/pom.xml`` (whose ``kafka.version`` property is the pinned version)
into ``deploy/kafka-local/lib/<version>/``. docs/kafka-local.md explains the choice.

A data dir holds one broker for its whole life::

    DIR/
      server.properties   rewritten at each start from the ports fixed at the first start
      state.json          version, ports, bootstrap servers, pid (null when stopped)
      kafka.pid           present while a broker started from DIR runs
      data/               log.dirs and metadata.log.dir, formatted once
      logs/server.log     the broker's log (log4j2.xml); logs/stdout.log holds JVM output
      tls/                with ``sasl_ssl=True``: ca.pem (the throwaway CA clients trust),
                          server.p12 (the broker's keystore), secrets.json (mode 0600:
                          keystore and SCRAM passwords)

With ``sasl_ssl=True`` the broker also serves a SASL_SSL listener on its own port
(``sasl_bootstrap_servers``): TLS with a certificate for 127.0.0.1 and localhost signed by
a CA made with keytool at the first start, and SCRAM-SHA-512 or SCRAM-SHA-256
authentication for one user (``sasl_username``/``sasl_password``) whose credentials are
written into the metadata log when the storage is formatted. The PLAINTEXT listener stays
for inter-broker traffic and for admin tools.

``start`` order: check jars, fix ports (free loopback ports, kept across restarts), write
server.properties, format storage unless already formatted, launch ``kafka.Kafka``, then
poll a Metadata request until the broker lists itself. ``stop`` sends SIGTERM (controlled
shutdown), waits, and SIGKILLs after the timeout.

The TLS and SCRAM set-up is :mod:`streams.kafka.local.tls`, the settings
:mod:`streams.kafka.local.properties`, and the command line (``deploy/kafka-local/kafka-local``)
:mod:`streams.kafka.local.cli`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from streams.kafka.local.jars import KafkaLocalError, default_home, pinned_version
from streams.kafka.local.probe import broker_answers
from streams.kafka.local.process import LOOPBACK, ChildProcess, free_ports, wait_until
from streams.kafka.local.properties import jvm_options, local_settings, write_properties
from streams.kafka.local.tls import MASK, SASL_USERNAME, make_tls, read_secrets, scram_arguments

__all__ = ["KafkaLocal"]

_ERROR_LINES = 12
_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class _Ports:
    broker: int
    controller: int
    sasl: int | None = None


def _cmdline(pid: int) -> str:
    proc_file = Path(f"/proc/{pid}/cmdline")
    if proc_file.parent.is_dir():
        try:
            return proc_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    done = subprocess.run(
        ["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout


class KafkaLocal:
    """One local broker bound to one data dir; see the module docstring for the layout.

    Without ``data_dir`` a temporary dir is created and removed by ``close()`` (and by
    leaving the ``with`` block). ``restart()`` keeps the data dir and the ports, so clients
    reconnect to the same bootstrap address. ``quick_jit`` limits the JIT to C1, which
    starts the broker faster but lowers its peak throughput: turn it off for benchmarks.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        version: str | None = None,
        heap_mb: int = 512,
        quick_jit: bool = True,
        home: Path | None = None,
        java: str = "java",
        sasl_ssl: bool = False,
    ) -> None:
        self._owns_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="kafka-local-"))
            if data_dir is None
            else Path(data_dir).resolve()
        )
        self.home = (home or default_home()).resolve()
        self.heap_mb = heap_mb
        self.quick_jit = quick_jit
        self.java = java
        state = self._read_state()
        # Not the version in state.json: after a pin bump, an existing dir starts the new
        # pinned version (4.x brokers open data written by an older 4.x).
        self.version = version or pinned_version(self.home)
        self._ports: _Ports | None = None
        broker_port, controller_port = state.get("broker_port"), state.get("controller_port")
        sasl_port = state.get("sasl_port")
        if isinstance(broker_port, int) and isinstance(controller_port, int):
            self._ports = _Ports(broker_port, controller_port,
                                 sasl_port if isinstance(sasl_port, int) else None)
        # A dir that once had the secure listener keeps it: its users live in its metadata.
        self.sasl_ssl = sasl_ssl or isinstance(sasl_port, int)
        self._child: ChildProcess | None = None
        self._detached = False
        self.startup_s: float | None = None
        self._log_offsets: dict[Path, int] = {}

    # -- paths and state ------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        """The broker's log4j log; read it when a test needs to know what the broker did."""
        return self.data_dir / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def bootstrap_servers(self) -> str:
        if self._ports is None:
            raise KafkaLocalError(f"no broker was ever started from {self.data_dir}")
        return f"{LOOPBACK}:{self._ports.broker}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_SSL listener (``sasl_ssl=True`` only), e.g. ``127.0.0.1:PORT``."""
        if self._ports is None or self._ports.sasl is None:
            raise KafkaLocalError(f"no SASL_SSL listener was ever started from {self.data_dir}")
        return f"{LOOPBACK}:{self._ports.sasl}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the broker's certificate: the clients' ``ssl_cafile``."""
        return self.tls_dir / "ca.pem"

    @property
    def sasl_username(self) -> str:
        return SASL_USERNAME

    @property
    def sasl_password(self) -> str:
        """The SCRAM password of :attr:`sasl_username` (same for both mechanisms)."""
        return read_secrets(self.tls_dir)["sasl_password"]

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        if self._child is not None and self._child.alive():
            return self._child.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        # The pid may have been reused since: only a java running our config is ours.
        cmd = _cmdline(pid)
        return pid if "kafka.Kafka" in cmd and str(self.config_file) in cmd else None

    @property
    def is_running(self) -> bool:
        return self.pid is not None

    def _read_state(self) -> dict[str, object]:
        try:
            loaded = json.loads((self.data_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _write_state(self, pid: int | None) -> None:
        assert self._ports is not None
        state = {
            "version": self.version,
            "bootstrap_servers": self.bootstrap_servers,
            "broker_port": self._ports.broker,
            "controller_port": self._ports.controller,
            "sasl_port": self._ports.sasl,
            "sasl_bootstrap_servers": (
                self.sasl_bootstrap_servers if self._ports.sasl is not None else None
            ),
            "pid": pid,
            "log_file": str(self.log_file),
            "startup_s": self.startup_s,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0, *, detach: bool = False) -> str:
        """Start the broker and return its bootstrap servers once it serves requests.

        ``detach=True`` lets the broker outlive this Python process (the CLI uses it);
        otherwise it is killed when this object is collected or the interpreter exits.
        """
        if self.is_running:
            raise KafkaLocalError(f"a broker already runs from {self.data_dir} (pid {self.pid})")
        lib = self.home / "lib" / self.version
        if not (lib / f"kafka_2.13-{self.version}.jar").is_file():
            raise KafkaLocalError(
                f"no jars for Kafka {self.version} in {lib}; run: deploy/kafka-local/kafka-local "
                f"fetch --version {self.version}"
            )
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        formatted = (self.data_dir / "data" / "meta.properties").is_file()
        if self.sasl_ssl and formatted and not (self.tls_dir / "secrets.json").is_file():
            raise KafkaLocalError(
                f"{self.data_dir} was formatted without SASL users; use a fresh dir for "
                "sasl_ssl=True"
            )
        if self._ports is None:
            broker, controller, sasl = free_ports(3)
            self._ports = _Ports(broker, controller, sasl if self.sasl_ssl else None)
        elif self.sasl_ssl and self._ports.sasl is None:
            self._ports = _Ports(self._ports.broker, self._ports.controller,
                                 free_ports(1)[0])
        if self.sasl_ssl and not (self.tls_dir / "server.p12").is_file():
            make_tls(self.tls_dir, java=self.java)
        self._write_config()
        if not formatted:
            self._format(lib)

        self._log_offsets = {
            path: path.stat().st_size if path.exists() else 0
            for path in (self.log_file, self.data_dir / "logs" / "stdout.log")
        }
        began = time.monotonic()
        child = ChildProcess.start(
            [self.java, *self._jvm_options(self.heap_mb), "-cp", f"{lib}/*", "kafka.Kafka",
             str(self.config_file)],
            log_path=self.data_dir / "logs" / "stdout.log", cwd=self.data_dir,
            new_session=True, detach=detach)
        self._child = child
        self._detached = detach
        self.pid_file.write_text(f"{child.pid}\n")
        try:
            self._wait_ready(child, timeout_s=began + timeout_s - time.monotonic())
        except BaseException:
            self.stop(timeout_s=10)
            raise
        self.startup_s = round(time.monotonic() - began, 3)
        self._write_state(child.pid)
        return self.bootstrap_servers

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the broker, wait up to timeout_s for its controlled shutdown, then SIGKILL.

        A no-op when no broker runs. Returns once the process is gone.
        """
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout_s):
                os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 10.0)
        self._child = None
        self.pid_file.unlink(missing_ok=True)
        if self._ports is not None and self.data_dir.is_dir():
            self._write_state(None)

    def restart(self, timeout_s: float = 60.0) -> str:
        """Stop, then start again on the same ports and data; returns the same bootstrap."""
        detach = self._detached
        self.stop()
        return self.start(timeout_s, detach=detach)

    def close(self) -> None:
        """Stop the broker and remove the data dir if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _jvm_options(self, heap_mb: int) -> list[str]:
        return jvm_options(data_dir=self.data_dir, home=self.home, version=self.version,
                           heap_mb=heap_mb, quick_jit=self.quick_jit)

    def _write_config(self) -> None:
        assert self._ports is not None
        secure = self._ports.sasl is not None
        settings = local_settings(
            self.data_dir, broker_port=self._ports.broker,
            controller_port=self._ports.controller, sasl_port=self._ports.sasl,
            keystore=self.tls_dir / "server.p12" if secure else None,
            keystore_password=read_secrets(self.tls_dir)["keystore_password"] if secure else "")
        write_properties(self.config_file, settings)

    def _format(self, lib: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # "--cluster-id=ID", not "-t ID": one id in 32 starts with "-" and reads as an option.
        done = subprocess.run(
            [
                self.java,
                *self._jvm_options(256),
                "-cp",
                f"{lib}/*",
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_file),
                *(scram_arguments(self.sasl_password) if self.sasl_ssl else []),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.data_dir,
        )
        if done.returncode != 0:
            output = f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
            if self.sasl_ssl:
                output = output.replace(self.sasl_password, MASK)
            raise KafkaLocalError(
                f"formatting {self.data_dir / 'data'} failed (exit {done.returncode}):\n"
                f"{output}"
            )

    def _wait_ready(self, child: ChildProcess, *, timeout_s: float) -> None:
        """Until the broker lists itself in a Metadata answer (and, with TLS, its SASL_SSL
        port accepts connections); fails with what this start-up logged."""
        ports = self._ports
        assert ports is not None

        def answers() -> bool:
            return broker_answers(LOOPBACK, ports.broker, timeout_s=1.0) and (
                ports.sasl is None or _accepts(LOOPBACK, ports.sasl))

        try:
            wait_until(answers, timeout_s=timeout_s, what=f"Kafka {self.version}", child=child)
        except AssertionError as exc:  # it exited
            raise KafkaLocalError(
                f"Kafka {self.version} exited with {child.returncode} during start-up\n"
                + self._log_tail()) from exc
        except TimeoutError as exc:
            raise KafkaLocalError(
                f"Kafka {self.version} did not answer on {self.bootstrap_servers} in time\n"
                + self._log_tail()) from exc

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        if self._child is not None and self._child.pid == pid:
            return self._child.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.pid == pid:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _log_tail(self) -> str:
        """What this start-up wrote: the first error with its stack, then the last lines.

        The first error comes first because a failed start logs a long shutdown after
        the line that says why (e.g. "Address already in use").
        """
        parts = []
        for path in (self.log_file, self.data_dir / "logs" / "stdout.log"):
            try:
                with path.open("rb") as f:
                    f.seek(self._log_offsets.get(path, 0))
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            first_error = next(
                (i for i, line in enumerate(lines) if " ERROR " in line or " FATAL " in line),
                None,
            )
            if first_error is not None:
                error = lines[first_error : first_error + _ERROR_LINES]
                parts.append(f"--- first error in {path}\n" + "\n".join(error))
            parts.append(f"--- last lines of {path}\n" + "\n".join(lines[-_TAIL_LINES:]))
        return "\n".join(parts)


def _accepts(host: str, port: int) -> bool:
    """True when a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False
