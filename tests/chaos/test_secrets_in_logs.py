"""No chaos run wrote a secret into a log: every line of every worker and sink log of the
session is searched for the Stripe key and the SASL passwords those runs used.

This test runs after every other chaos test of the session (tests/chaos/conftest.py
moves it last), so it scans what the kills, outages and restarts made the processes
log: connection errors, Stripe errors, retries, restarts. Run on its own, it first runs
a small pipeline itself (a worker and a sink over SASL_SSL, the sink killed once and
restarted), so that it never passes on an empty set of logs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.kafka.local import KafkaLocal
from streams.testing.verdict import Workload


def find_secrets(path: Path, secrets: list[str]) -> list[str]:
    """``path:line`` for each line holding a secret or the last 12 characters of one."""
    found = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw.decode(errors="replace")
            if any(s in line or s[-12:] in line for s in secrets):
                found.append(f"{path}:{n}")
    return found


async def small_run(kafka_sasl_ssl: KafkaLocal, sasl_env, scenario) -> list[Path]:
    """A worker and a sink over SASL_SSL billing a small workload, the sink killed once;
    returns their logs. (No report row: this run only makes logs to scan.)"""
    s = await scenario(kafka_sasl_ssl.sasl_bootstrap_servers,
                       Workload.make(seed=99, events=2_000, customers=20, span_s=5 * 60),
                       extra_env=sasl_env(kafka_sasl_ssl)).start(wait_sink=True)
    assert s.sink is not None
    s.sink.kill()
    s.run.start_sink()
    diff = await s.settle(timeout_s=300)
    await s.run.verdict(s.workload.truth, diff)
    return s.run.log_paths


@pytest.mark.quick
@pytest.mark.timeout(600)
async def test_no_secret_in_chaos_logs(chaos_logs: list[Path], chaos_secrets, scenario,
                                       kafka_sasl_ssl: KafkaLocal, sasl_env) -> None:
    own_run = not chaos_logs
    logs = list(chaos_logs)
    if own_run:
        logs = await small_run(kafka_sasl_ssl, sasl_env, scenario)
    secrets = chaos_secrets.values
    assert chaos_secrets.stripe_key in secrets and chaos_secrets.sasl_passwords, (
        "the scan must cover the Stripe key and at least one SASL password")
    logs = [p for p in logs if p.exists()]
    names = {p.name for p in logs}
    assert "sink.log" in names and any(n.startswith("worker-") for n in names), names
    lines = 0
    found: list[str] = []
    for path in logs:
        found += find_secrets(path, secrets)
        with path.open("rb") as f:
            lines += sum(1 for _ in f)
    print(f"scanned {lines} lines in {len(logs)} logs for {len(secrets)} secrets "
          f"(own run: {own_run})")
    assert lines > 1000, "the chaos logs are suspiciously short"
    assert found == [], f"secrets in logs: {found[:20]}"

