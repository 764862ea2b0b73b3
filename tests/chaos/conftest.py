"""Fixtures of the chaos suite: the fake Stripe, a run factory, secrets, logs and the report.

Every run bills a fake Stripe that accepts one random key (``chaos_secrets.stripe_key``),
so the key is really sent; runs on a private SASL_SSL broker add its password to
``chaos_secrets``. Every log a run's processes write is registered in ``chaos_logs``, and
``test_secrets_in_logs.py`` (moved to the end of the session) scans them all.

A scenario gets its shared set-up and verdict from ``scenario``
(:class:`streams.testing.scenario.Scenario`), and a private SASL_SSL broker, when it
stops or restarts one, from ``private_broker``. Each scenario reports one row
(``chaos_report``): printed, and appended as a JSON line to the file named by
``METERSTREAM_CHAOS_REPORT`` when it is set (docs/reliability.md's table comes from such
a file).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.fakes.metronome import FakeMetronome
from streams.fakes.stripe import FakeStripe, FakeStripeConfig
from streams.kafka.local import KafkaLocal
from streams.testing.chaos import ChaosReport, ChaosRun
from streams.testing.pipeline import PipelineEnv
from streams.testing.scenario import Scenario
from streams.testing.verdict import Workload

SCAN_TEST = "test_secrets_in_logs.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan runs after every chaos scenario of the session."""
    last = [i for i in items if i.path.name == SCAN_TEST]
    if last:
        items[:] = [i for i in items if i.path.name != SCAN_TEST] + last


@dataclass
class ChaosSecrets:
    stripe_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(20))
    sasl_passwords: list[str] = field(default_factory=list)

    @property
    def values(self) -> list[str]:
        return [self.stripe_key, *self.sasl_passwords]


@pytest.fixture(scope="session")
def chaos_secrets() -> ChaosSecrets:
    return ChaosSecrets()


@pytest.fixture(scope="session")
def chaos_logs() -> list[Path]:
    """Every log file written by a chaos run's workers and sinks in this session."""
    return []


@pytest.fixture
async def fake_stripe(chaos_secrets: ChaosSecrets) -> AsyncIterator[FakeStripe]:
    async with FakeStripe(FakeStripeConfig(api_key=chaos_secrets.stripe_key, seed=7)) as fake:
        yield fake


MakeRun = Callable[..., ChaosRun]


def sasl_ssl_env(broker: KafkaLocal, chaos_secrets: ChaosSecrets) -> dict[str, str]:
    """Settings for ``broker``'s SASL_SSL listener; its password joins the scanned secrets."""
    if broker.sasl_password not in chaos_secrets.sasl_passwords:
        chaos_secrets.sasl_passwords.append(broker.sasl_password)
    return {
        "METERSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "METERSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "METERSTREAM_KAFKA__SASL_USERNAME": broker.sasl_username,
        "METERSTREAM_KAFKA__SASL_PASSWORD": broker.sasl_password,
        "METERSTREAM_KAFKA__SSL_CAFILE": str(broker.ca_file),
    }


@pytest.fixture
def sasl_env(chaos_secrets: ChaosSecrets) -> Callable[[KafkaLocal], dict[str, str]]:
    """``sasl_env(broker)`` -> the METERSTREAM_KAFKA__* settings for its SASL_SSL listener."""
    return lambda broker: sasl_ssl_env(broker, chaos_secrets)


@pytest.fixture
async def make_run(fake_stripe: FakeStripe, chaos_secrets: ChaosSecrets,
                   chaos_logs: list[Path], tmp_path: Path) -> AsyncIterator[MakeRun]:
    """``make_run(bootstrap, partitions=4, mode="v2", extra_env=..., fake=...)`` -> a
    ChaosRun billing ``fake`` (default: the fake Stripe) whose processes are stopped, and
    whose logs are registered, at the end of the test. They stop in a thread, so the
    fake, on this event loop, answers them until they are gone."""
    runs: list[ChaosRun] = []

    def make(bootstrap: str, *, partitions: int = 4, mode: str = "v2",
             extra_env: dict[str, str] | None = None,
             fake: FakeStripe | FakeMetronome | None = None, **options: Any) -> ChaosRun:
        workdir = tmp_path / f"run{len(runs)}"
        workdir.mkdir()
        env = PipelineEnv(bootstrap, workdir, partitions=partitions,
                          extra_env=dict(extra_env or {}))
        run = ChaosRun(env, fake or fake_stripe, chaos_secrets.stripe_key, mode=mode,
                       **options)
        runs.append(run)
        return run

    yield make
    for run in runs:
        await asyncio.to_thread(run.stop_all)
        chaos_logs.extend(p for p in run.log_paths if p not in chaos_logs)


MakeScenario = Callable[..., Scenario]


@pytest.fixture
def scenario(make_run: MakeRun, chaos_report: ChaosReport) -> MakeScenario:
    """``scenario(bootstrap, workload, **make_run_options)`` -> a :class:`Scenario`: its
    run from ``make_run``, its verdict into ``chaos_report``."""

    def make(bootstrap: str, workload: Workload, **options: Any) -> Scenario:
        return Scenario(make_run(bootstrap, **options), workload, chaos_report)

    return make


@pytest.fixture
async def private_broker(chaos_report: ChaosReport,
                         tmp_path: Path) -> AsyncIterator[KafkaLocal]:
    """A broker of the test's own, with a SASL_SSL listener (the clients log in again after
    it restarts), for scenarios that stop it. Ask for it before ``scenario``: the run's
    processes then stop while it still answers. (It follows ``chaos_report``, so that the
    scenario's wall time counts the broker's start, as it always has.)"""
    broker = KafkaLocal(tmp_path / "broker", sasl_ssl=True, heap_mb=384)
    await asyncio.to_thread(broker.start, 120)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.close)


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> ChaosReport:
    return ChaosReport(request.node.name, os.environ.get("METERSTREAM_CHAOS_REPORT"))
