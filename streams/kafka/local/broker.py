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

Command line (also ``deploy/kafka-local/kafka-local``)::

    python -m streams.testing.kafka_local fetch [--version V]
    python -m streams.testing.kafka_local start [--dir DIR] [--version V] [--heap-mb N] [--sasl-ssl]
    python -m streams.testing.kafka_local stop [--dir DIR]
    python -m streams.testing.kafka_local status [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from streams.testing.distribution import (
    LOOPBACK,
    KafkaLocalError,
    default_home,
    fetch,
    free_ports,
    is_kafka3,
    node_settings,
    pinned_version,
)
from streams.testing.probe import broker_answers

__all__ = [
    "KafkaLocal",
    "KafkaLocalError",
    "default_home",
    "fetch",
    "main",
    "pinned_version",
]

_ERROR_LINES = 12
_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class _Ports:
    broker: int
    controller: int
    sasl: int | None = None


SASL_USERNAME = "meterstream"
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
_CERT_DAYS = 30


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


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer: a broker started without detach must not outlive its owner."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], KafkaLocal] | None = None
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
        return self._secrets()["sasl_password"]

    def _secrets(self) -> dict[str, str]:
        try:
            loaded = json.loads((self.tls_dir / "secrets.json").read_text())
        except (OSError, ValueError) as exc:
            raise KafkaLocalError(
                f"no SASL_SSL credentials in {self.tls_dir}; start with sasl_ssl=True"
            ) from exc
        return {str(k): str(v) for k, v in loaded.items()}

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
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
            self._make_tls()
        self._write_config()
        if not formatted:
            self._format(lib)

        self._log_offsets = {
            path: path.stat().st_size if path.exists() else 0
            for path in (self.log_file, self.data_dir / "logs" / "stdout.log")
        }
        began = time.monotonic()
        with (self.data_dir / "logs" / "stdout.log").open("ab") as out:
            proc = subprocess.Popen(
                [
                    self.java,
                    *self._jvm_options(self.heap_mb),
                    "-cp",
                    f"{lib}/*",
                    "kafka.Kafka",
                    str(self.config_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._proc = proc
        self._detached = detach
        self._finalizer = None if detach else weakref.finalize(self, _kill_quietly, proc)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            self._wait_ready(proc, deadline=began + timeout_s)
        except BaseException:
            self.stop(timeout_s=10)
            raise
        self.startup_s = round(time.monotonic() - began, 3)
        self._write_state(proc.pid)
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
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None
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
        opts = [
            f"-Xmx{heap_mb}m",
            "-Xms64m",
            # A single-threaded collector: smallest footprint, and pauses on a heap this
            # size stay in the low milliseconds.
            "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
        ]
        if self.quick_jit:
            opts.append("-XX:TieredStopAtLevel=1")
        if is_kafka3(self.version):
            opts.append(f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}")
        else:
            opts.append(f"-Dlog4j2.configurationFile={self.home / 'log4j2.xml'}")
        return opts

    def _write_config(self) -> None:
        assert self._ports is not None
        settings = node_settings(
            listen_host=LOOPBACK,
            advertised_host=LOOPBACK,
            broker_port=self._ports.broker,
            controller_port=self._ports.controller,
        )
        settings["log.dirs"] = str(self.data_dir / "data")
        settings["metadata.log.dir"] = str(self.data_dir / "data")
        if self._ports.sasl is not None:
            settings.update(self._sasl_ssl_settings(self._ports.sasl))
        lines = [f"{k}={v}" for k, v in settings.items()]
        self.config_file.write_text(
            "# written by streams.testing.kafka_local\n" + "\n".join(lines) + "\n"
        )

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
                *self._scram_arguments(),
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
                output = output.replace(self.sasl_password, "**********")
            raise KafkaLocalError(
                f"formatting {self.data_dir / 'data'} failed (exit {done.returncode}):\n"
                f"{output}"
            )

    # -- the SASL_SSL listener ---------------------------------------------------------------

    def _scram_arguments(self) -> list[str]:
        if not self.sasl_ssl:
            return []
        password = self.sasl_password
        args = []
        for mechanism in SASL_MECHANISMS:
            args += ["--add-scram", f"{mechanism}=[name={SASL_USERNAME},password={password}]"]
        return args

    def _sasl_ssl_settings(self, port: int) -> dict[str, str]:
        store_password = self._secrets()["keystore_password"]
        prefix = "listener.name.sasl_ssl."
        settings = {
            "listeners": self._listener_list("listeners", port),
            "advertised.listeners": self._listener_list("advertised.listeners", port),
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            prefix + "ssl.keystore.type": "PKCS12",
            prefix + "ssl.keystore.location": str(self.tls_dir / "server.p12"),
            prefix + "ssl.keystore.password": store_password,
            prefix + "ssl.key.password": store_password,
            prefix + "ssl.client.auth": "none",
        }
        for mechanism in SASL_MECHANISMS:
            settings[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        return settings

    def _listener_list(self, name: str, port: int) -> str:
        assert self._ports is not None
        base = node_settings(
            listen_host=LOOPBACK,
            advertised_host=LOOPBACK,
            broker_port=self._ports.broker,
            controller_port=self._ports.controller,
        )[name]
        return f"{base},SASL_SSL://{LOOPBACK}:{port}"

    def _make_tls(self) -> None:
        """A throwaway CA and a broker keystore (PKCS12) signed by it, with keytool."""
        keytool = shutil.which("keytool") or str(Path(self.java).parent / "keytool")
        tls = self.tls_dir
        shutil.rmtree(tls, ignore_errors=True)
        tls.mkdir(parents=True)
        tls.chmod(0o700)
        store_password = secrets.token_hex(16)
        creds = tls / "secrets.json"
        creds.touch(mode=0o600)
        creds.write_text(json.dumps({"keystore_password": store_password,
                                     "sasl_password": secrets.token_hex(16)}))
        ca, server = str(tls / "ca.p12"), str(tls / "server.p12")
        pw = ["-storepass", store_password, "-keypass", store_password]
        common = ["-storetype", "PKCS12", "-keyalg", "EC", "-groupname", "secp256r1"]
        steps = [
            ["-genkeypair", "-alias", "ca", "-dname", "CN=meterstream-kafka-local-ca",
             "-ext", "bc:c", "-validity", str(_CERT_DAYS), "-keystore", ca, *common, *pw],
            ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca, "-file", str(self.ca_file),
             *pw],
            ["-genkeypair", "-alias", "broker", "-dname", f"CN={LOOPBACK}",
             "-validity", str(_CERT_DAYS), "-keystore", server, *common, *pw],
            ["-certreq", "-alias", "broker", "-keystore", server,
             "-file", str(tls / "server.csr"), *pw],
            ["-gencert", "-rfc", "-alias", "ca", "-keystore", ca,
             "-infile", str(tls / "server.csr"), "-outfile", str(tls / "server.pem"),
             "-validity", str(_CERT_DAYS),
             "-ext", f"SAN=ip:{LOOPBACK},dns:localhost", "-ext", "KU=digitalSignature",
             "-ext", "EKU=serverAuth", *pw],
            ["-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_file),
             "-keystore", server, *pw],
            ["-importcert", "-noprompt", "-alias", "broker", "-file", str(tls / "server.pem"),
             "-keystore", server, *pw],
        ]
        for step in steps:
            done = subprocess.run(
                [keytool, *step], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                check=False, cwd=tls,
            )
            if done.returncode != 0:
                output = (done.stdout + done.stderr).replace(store_password, "**********")
                raise KafkaLocalError(f"keytool {step[0]} failed (exit {done.returncode}):\n"
                                      f"{output[-4000:]}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], *, deadline: float) -> None:
        assert self._ports is not None
        while True:
            if proc.poll() is not None:
                raise KafkaLocalError(
                    f"Kafka {self.version} exited with {proc.returncode} during start-up\n"
                    + self._log_tail()
                )
            if broker_answers(LOOPBACK, self._ports.broker, timeout_s=1.0) and (
                self._ports.sasl is None or _accepts(LOOPBACK, self._ports.sasl)
            ):
                return
            if time.monotonic() >= deadline:
                raise KafkaLocalError(
                    f"Kafka {self.version} did not answer on {self.bootstrap_servers} in time\n"
                    + self._log_tail()
                )
            time.sleep(0.1)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
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


def main(argv: list[str] | None = None) -> int:
    """The kafka-local command; exit status 0 on success, 1 on error, 3 for status=stopped."""
    parser = argparse.ArgumentParser(prog="kafka-local", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None, help="deploy/kafka-local dir")
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="copy the broker jars from Maven Central into lib/")
    p_fetch.add_argument("--version", default=None)
    p_start = sub.add_parser("start", help="start a broker; prints the bootstrap servers")
    p_start.add_argument("--version", default=None)
    p_start.add_argument("--heap-mb", type=int, default=512)
    p_start.add_argument("--timeout", type=float, default=90.0)
    p_start.add_argument("--no-quick-jit", dest="quick_jit", action="store_false")
    p_start.add_argument("--sasl-ssl", action="store_true",
                         help="also serve a SASL_SSL (SCRAM) listener; see tls/ in the dir")
    p_stop = sub.add_parser("stop", help="stop the broker (SIGTERM, then SIGKILL)")
    p_stop.add_argument("--timeout", type=float, default=30.0)
    p_status = sub.add_parser("status", help="print running/stopped and the bootstrap servers")
    for p in (p_start, p_stop, p_status):
        p.add_argument(
            "--dir", type=Path, default=None, help="data dir (default: deploy/kafka-local/run)"
        )
    args = parser.parse_args(argv)
    home: Path = args.home or default_home()

    try:
        if args.command == "fetch":
            print(fetch(args.version, home=home))
            return 0
        data_dir: Path = args.dir or home / "run"
        if args.command == "start":
            data_dir.mkdir(parents=True, exist_ok=True)
            broker = KafkaLocal(
                data_dir,
                version=args.version,
                heap_mb=args.heap_mb,
                quick_jit=args.quick_jit,
                home=home,
                sasl_ssl=args.sasl_ssl,
            )
            print(broker.start(args.timeout, detach=True))
            if broker.sasl_ssl:
                print(f"SASL_SSL {broker.sasl_bootstrap_servers} ca={broker.ca_file} "
                      f"user={broker.sasl_username} (password in {broker.tls_dir}/secrets.json)")
            return 0
        broker = KafkaLocal(data_dir, home=home)
        if args.command == "stop":
            broker.stop(args.timeout)
            return 0
        pid = broker.pid
        if pid is None:
            print("stopped")
            return 3
        print(
            f"running {broker.bootstrap_servers} pid={pid} version={broker.version} "
            f"log={broker.log_file}"
        )
        return 0
    except KafkaLocalError as exc:
        print(f"kafka-local: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
