"""The whole pipeline over SASL_SSL (TLS + SCRAM-SHA-512) on a real broker.

A second local broker (``kafka_sasl_ssl``) serves a SASL_SSL listener with a certificate
from a throwaway CA. Configured only through ``METERSTREAM_KAFKA__*`` environment
variables, ``meterstream topics create``, the producer SDK, a real ``meterstream worker``
and the test's own reader all talk to that listener: events go in, the worker's
summaries come out with exact totals, and they are read back over SASL_SSL.

A wrong password fails cleanly: ``topics create`` exits 1 with a one-line error and the
worker exits non-zero, and neither output contains the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from streams.kafka.local import KafkaLocal
from streams.loadgen.generate import totals_from_summaries
from streams.sdk.producer import UsageProducer
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic

CUSTOMERS = ("acme", "globex", "initech")
METERS = ("cpu_seconds", "gpu_seconds")


def sasl_env(broker: KafkaLocal, password: str | None = None) -> dict[str, str]:
    """The settings a deployment would set to reach the broker over SASL_SSL."""
    return {
        "METERSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "METERSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "METERSTREAM_KAFKA__SASL_USERNAME": broker.sasl_username,
        "METERSTREAM_KAFKA__SASL_PASSWORD": password or broker.sasl_password,
        "METERSTREAM_KAFKA__SSL_CAFILE": str(broker.ca_file),
    }


def run_cli(env: PipelineEnv, *args: str, timeout_s: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env={**os.environ, **env.env},
        capture_output=True, text=True, timeout=timeout_s, cwd=env.workdir, check=False,
    )


async def test_pipeline_over_sasl_ssl(kafka_sasl_ssl: KafkaLocal, tmp_path: Path) -> None:
    broker = kafka_sasl_ssl
    password = broker.sasl_password
    env = PipelineEnv(broker.sasl_bootstrap_servers, tmp_path, partitions=2,
                      extra_env=sasl_env(broker))
    settings = env.settings()
    assert settings.kafka.security_protocol == "SASL_SSL"

    created = run_cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr[-3000:]
    assert created.stdout.count(": created") == 7, created.stdout  # 6 topics + the changelog

    worker = env.start_worker()
    try:
        # Every event in the window that ended two minutes ago: the worker's idle ticks
        # close it as soon as the events are in.
        window_start = (int(time.time()) // 60 - 3) * 60_000
        want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        async with UsageProducer.from_settings(settings, spool_dir=tmp_path / "spool") as p:
            for i in range(600):
                customer, meter = CUSTOMERS[i % 3], METERS[i % 2]
                value = Decimal(i % 17) + Decimal("0.25")
                await p.report(customer, meter, value, timestamp=window_start + i * 50)
                want[(customer, meter)] += value
            await p.flush()
            assert p.spool.pending_bytes == 0, "the events went to the spool, not to Kafka"

        summaries = await read_topic(
            env.bootstrap, settings.topics.summaries, kafka=settings.kafka,
            until=lambda msgs: totals_from_summaries({m["id"]: m for m in msgs}) == want,
            quiet_s=1, timeout_s=120,
        )
        assert totals_from_summaries({m["id"]: m for m in summaries}) == want
        assert worker.alive()
    finally:
        code = worker.stop(timeout_s=30)
    log = worker.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert password not in log


async def test_wrong_password_fails_cleanly(kafka_sasl_ssl: KafkaLocal, tmp_path: Path) -> None:
    broker = kafka_sasl_ssl
    wrong = "wrong-" + broker.sasl_password[::-1]
    env = PipelineEnv(broker.sasl_bootstrap_servers, tmp_path, partitions=1,
                      extra_env=sasl_env(broker, wrong))

    created = run_cli(env, "topics", "create")
    assert created.returncode == 1
    last_line = created.stderr.strip().splitlines()[-1]
    assert last_line.startswith("meterstream: cannot create topics on "), created.stderr[-3000:]
    assert "Traceback" not in created.stderr
    assert "Authentication failed" in created.stderr  # aiokafka's log line says why
    for secret in (wrong, broker.sasl_password):
        assert secret not in created.stdout + created.stderr

    worker = env.start_worker()
    try:
        worker.proc.wait(timeout=90)
    finally:
        worker.stop(timeout_s=10)
    log = worker.log_path.read_text(errors="replace")
    assert worker.proc.returncode != 0, log[-3000:]
    assert "SaslAuthenticationFailed" in log or "Authentication failed" in log, log[-3000:]
    for secret in (wrong, broker.sasl_password):
        assert secret not in log
