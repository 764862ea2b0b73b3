"""A real Prometheus server scrapes a real worker and counts exactly the events produced.

Prometheus is Debian's ``prometheus`` binary (scripts/bootstrap.sh installs it), run by
the test itself on a free loopback port with its storage in a temp directory: no system
service is involved. It scrapes the worker's /metrics every second. The test produces
2,000 valid events (no duplicates, no invalid records), then asks Prometheus' HTTP API
for ``sum(meterstream_events_total{outcome=~"accepted|late"})`` until it answers 2,000.
It also checks that the consumer lag, RocksDB size and process_* series reach Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.kafka.local.process import ChildProcess, free_ports
from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate
from streams.testing.pipeline import PipelineEnv

EVENTS = 2_000
TIMEOUT_S = 90.0


def _query(base: str, promql: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    result: list[dict[str, object]] = doc["data"]["result"]
    return result


def _scalar(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    if not result:
        return None
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def _start_prometheus(tmp_path: Path, worker_port: int) -> tuple[ChildProcess, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: apt-get install prometheus "
                    "(scripts/bootstrap.sh does)")
    (port,) = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: meterstream-worker\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{worker_port}']\n"
    )
    proc = ChildProcess.start(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        log_path=tmp_path / "prometheus.log", cwd=tmp_path)
    return proc, f"http://127.0.0.1:{port}"


async def _wait_for(base: str, promql: str, ok: Callable[[float], bool],
                    deadline: float) -> float | None:
    """Poll ``promql`` until ``ok(value)`` holds or the deadline passes; the last value."""
    value: float | None = None
    while time.monotonic() < deadline:
        try:
            value = _scalar(base, promql)
        except OSError:  # Prometheus still starting
            value = None
        if value is not None and ok(value):
            return value
        await asyncio.sleep(1.0)
    return value


async def test_prometheus_counts_every_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    truth = GroundTruth()
    spec = WorkloadSpec(events=EVENTS, customers=50, duplicate_rate=0.0, invalid_rate=0.0,
                        span_ms=5 * 60_000, end_ms=int(time.time() * 1000) - 70_000, seed=3)
    records = list(generate(spec, truth))
    assert truth.distinct_events == truth.events_sent == EVENTS

    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2)
    await env.create_topics()
    await env.produce(records)
    worker = env.start_worker()
    prometheus, base = _start_prometheus(tmp_path, worker.web_port)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        events = await _wait_for(
            base, 'sum(meterstream_events_total{outcome=~"accepted|late"})',
            lambda v: v >= EVENTS, deadline)
        assert worker.alive(), worker.log_path.read_text()[-3000:]
        assert events == EVENTS, (
            f"Prometheus counted {events} events, want {EVENTS}; prometheus log: "
            f"{(tmp_path / 'prometheus.log').read_text()[-2000:]}")

        lag = await _wait_for(
            base, 'max(meterstream_consumer_lag_messages{job="meterstream-worker"})',
            lambda v: v == 0, deadline + 15)
        assert lag == 0, f"consumer lag series: {lag}"
        partitions = _query(base, "meterstream_consumer_lag_messages")
        assert {str(r["metric"]["partition"]) for r in partitions  # type: ignore[index]
                } == {"0", "1"}
        rss = _scalar(base, 'process_resident_memory_bytes{job="meterstream-worker"}')
        assert rss is not None and rss > 10_000_000
        # The state size is sampled every 15 s; the first sample comes 15 s after start.
        size = await _wait_for(base, "meterstream_rocksdb_size_bytes", lambda v: v > 0,
                               deadline + 30)
        assert size is not None and size > 0
        budget = _scalar(base, 'meterstream_rocksdb_memory_bytes{kind="budget"}')
        assert budget == 64 * 2**20, budget  # WORKER__ROCKSDB_MEMORY_MB's default
        cache = _scalar(base, 'meterstream_rocksdb_memory_bytes{kind="cache"}')
        memtables = _scalar(base, 'meterstream_rocksdb_memory_bytes{kind="memtables"}')
        assert cache is not None and memtables is not None and 0 < memtables <= cache <= budget
    finally:
        prometheus.stop(timeout_s=30)
        env.stop_all()
    assert worker.proc.returncode == 0
