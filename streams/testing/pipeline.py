"""The real pipeline in tests and benchmarks: its settings, worker processes, producing.

A :class:`PipelineEnv` owns a unique set of topic names and an app id on a broker, the
environment that configures ``meterstream`` processes for them, and a helper to produce
a workload (streams.testing.readback reads output topics back). Workers run as real
subprocesses (so they can be killed with SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.config import Settings, load_settings
from streams.kafka.local.process import (
    LOOPBACK,
    ChildProcess,
    free_ports,
    http_ok,
    spawn,
    wait_until_async,
)

__all__ = ["PipelineEnv", "WorkerProcess"]


class WorkerProcess(ChildProcess):
    """A ``meterstream worker`` subprocess: its state dir and the port of its web server
    (``/ready``, ``/metrics``, the usage API)."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, log_start: int, *,
                 state_dir: Path, web_port: int) -> None:
        super().__init__(proc, log_path, log_start)
        self.state_dir = state_dir
        self.web_port = web_port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    async def wait_ready(self, timeout_s: float = 240.0) -> float:
        """Until ``/ready`` answers 200 (its tables are recovered); returns the seconds it
        took. Fails with the worker's log if it exits first."""
        url = f"{self.url}/ready"
        return await wait_until_async(lambda: http_ok(url), timeout_s=timeout_s,
                                      what=f"worker on port {self.web_port}", child=self)


@dataclass
class PipelineEnv:
    """Topic names, app id and environment for one isolated pipeline on a broker."""

    bootstrap: str
    workdir: Path
    partitions: int = 4
    window_s: int = 60
    grace_s: int = 5
    idle_close_after_s: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        p = self.prefix
        env = {
            "METERSTREAM_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "METERSTREAM_TOPICS__PARTITIONS": str(self.partitions),
            "METERSTREAM_TOPICS__EVENTS": f"{p}.usage.events",
            "METERSTREAM_TOPICS__EVENTS_DLQ": f"{p}.usage.events.dlq",
            "METERSTREAM_TOPICS__SUMMARIES": f"{p}.usage.summaries",
            "METERSTREAM_TOPICS__SUMMARIES_DLQ": f"{p}.usage.summaries.dlq",
            "METERSTREAM_TOPICS__ALERTS": f"{p}.usage.alerts",
            "METERSTREAM_TOPICS__CUSTOMERS": f"{p}.usage.customers",
            "METERSTREAM_WORKER__APP_ID": f"{p}-ms",
            "METERSTREAM_AGGREGATOR__WINDOW_S": str(self.window_s),
            "METERSTREAM_AGGREGATOR__GRACE_S": str(self.grace_s),
            "METERSTREAM_AGGREGATOR__IDLE_CLOSE_AFTER_S": str(self.idle_close_after_s),
        }
        env.update(self.extra_env)
        return env

    def settings(self, **overrides: Any) -> Settings:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return load_settings(**overrides)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    async def create_topics(self) -> None:
        from streams.kafka.admin import create_topics

        await create_topics(self.settings())

    def start_worker(self, name: str = "w1", web_port: int = 0) -> WorkerProcess:
        """Start a worker (its log ``worker-<name>.log``, its state ``state-<name>``, both
        kept across restarts under the same name) on ``web_port`` (0: a free one)."""
        state_dir = self.workdir / f"state-{name}"
        web_port = web_port or free_ports(1)[0]
        env = {**os.environ, **self.env,
               "METERSTREAM_WORKER__STATE_DIR": str(state_dir),
               "METERSTREAM_WORKER__WEB_PORT": str(web_port)}
        proc, log_start = spawn([sys.executable, "-m", "streams", "worker"],
                                log_path=self.workdir / f"worker-{name}.log", env=env,
                                cwd=self.workdir)
        worker = WorkerProcess(proc, self.workdir / f"worker-{name}.log", log_start,
                               state_dir=state_dir, web_port=web_port)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop(timeout_s=30)

    async def produce(self, records: Iterable[tuple[bytes, bytes]], topic: str | None = None,
                      *, linger_ms: int = 20) -> int:
        """Produce (key, value) records, idempotently, and wait for every ack.

        Connects like the workers do (``METERSTREAM_KAFKA__*`` in ``extra_env``: TLS, SASL).
        """
        from streams.kafka.client import connection_options

        settings = self.settings()
        producer = AIOKafkaProducer(
            **connection_options(settings.kafka), enable_idempotence=True, acks="all",
            linger_ms=linger_ms, max_batch_size=256 * 1024, compression_type="lz4",
        )
        await producer.start()
        topic = topic or settings.topics.events
        n = 0
        try:
            pending = []
            for key, value in records:
                pending.append(await producer.send(topic, key=key, value=value))
                n += 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        return n
