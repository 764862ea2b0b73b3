"""Alert latency: from an event's produce time to its alert on usage.alerts.

For each offered load a fresh pipeline (topics, one worker) is started and warmed up.
Then a paced producer offers single-event records for ``duration_s`` seconds: the producer
SDK compute workers use (``UsageProducer``, unpacked, 5 ms linger), so the load costs the
machine what the real producers' load would, not the per-message ``send`` of a bare
aiokafka producer (0.85 of a core for 50,000 events/s with the alerts tail, against 0.5
with the SDK; on two cores that is taken from the worker). The load is paced in ticks of
one linger (5 ms), each reporting every event due by then. Customers
come in a rolling group of ``group`` at a time and each receives ``per_customer``
events priced so that the last one crosses the spend threshold (10 USD), so alerts are
spread evenly over the run. Each event's ``timestamp`` is its produce time (the
wall clock when the harness reports it; the SDK stamps the record's CreateTime when it
appends it, microseconds later), and the alert carries it back as ``crossed_at_event_ms``.

The alerts topic is switched to ``LogAppendTime``, so the alert's time is when the broker
appended it: latency = alert append time - crossing event's produce time, both on this
machine's clock.

Every run is bounded: after the load ends the harness waits at most ``wait_s`` for the
remaining alerts. Alerts still missing then are reported with a lower bound on their
latency, together with the throughput the worker achieved while the load was offered
(from its /metrics), its backlog when the load ended, and how long after the load ended it
had processed every event sent (``caught_up_after_load_ms``). A worker that keeps up has
only what was in flight left then, and clears it within the latency bound; a backlog
takes as long to clear as it took to grow. The CPU the worker, the broker and this
harness (the load and the alerts tail) each took during the load is recorded too, in
cores: on a 2-core machine, what the worker keeps up with depends on what the others
leave it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from benchmarks.common import (
    PARTITIONS,
    percentile,
    proc_status,
    wait_until,
    worker_events,
    worker_ready,
)
from streams.kafka.local.process import free_ports
from streams.sdk.producer import UsageProducer
from streams.testing.pipeline import PipelineEnv

THRESHOLD_MINOR = "1000"  # 10 USD
LINGER_MS = 5  # the SDK's default
# The load is paced in ticks of one linger: each tick reports every event due by then, and
# the SDK ships them after the linger as it would anyway. A finer tick (0.5 ms until
# session 13) only wakes the harness more often, on the two cores the worker needs.
PACE_S = LINGER_MS / 1000
VALUE = "1250"  # gpu_seconds at 0.08 cents: 100 cents per event
WARM_UP_RATE = 10_000


@dataclass
class LatencyParams:
    rates: list[int]
    duration_s: float = 10.0
    wait_s: float = 30.0
    group: int = 50
    per_customer: int = 10
    # An unreported run first, at this many seconds of 10,000 events/s: a fresh broker's JIT
    # compiles the transaction paths during its first minutes under load, and until then
    # its stalls (hundreds of ms) are the tail of whatever run comes first.
    warm_up_s: float = 0.0


async def _set_log_append_time(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"message.timestamp.type": "LogAppendTime"})])
        return True
    except Exception:  # reported in the results: latency then uses the alert's CreateTime
        return False
    finally:
        await admin.close()


async def _tail_alerts(bootstrap: str, topic: str, out: dict[str, tuple[int, int, int]],
                       ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Collect alerts appended after start: id -> (event ms, alert ms, timestamp type)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    out[doc["id"]] = (int(doc["crossed_at_event_ms"]), m.timestamp,
                                      m.timestamp_type)
    finally:
        await consumer.stop()


async def run_one(bootstrap: str, workdir: Path, rate: int, p: LatencyParams,
                  log: Any = print, broker_pid: int | None = None) -> dict[str, Any]:
    env = PipelineEnv(bootstrap, workdir / f"rate{rate}", partitions=PARTITIONS,
                      window_s=60, grace_s=5, idle_close_after_s=1,
                      extra_env={"METERSTREAM_AGGREGATOR__THRESHOLDS_MINOR":
                                 f'["{THRESHOLD_MINOR}"]'})
    os.makedirs(env.workdir, exist_ok=True)
    settings = env.settings()
    await env.create_topics()
    log_append = await _set_log_append_time(bootstrap, settings.topics.alerts)
    (port,) = free_ports(1)
    worker = env.start_worker("lat", web_port=port)
    alerts: dict[str, tuple[int, int, int]] = {}
    stop, tail_ready = asyncio.Event(), asyncio.Event()
    tail = asyncio.create_task(_tail_alerts(bootstrap, settings.topics.alerts, alerts,
                                            tail_ready, stop))
    producer = UsageProducer.from_settings(settings, spool_dir=env.workdir / "spool",
                                           pack=False, linger_ms=LINGER_MS)
    await producer.start()
    result: dict[str, Any] = {"offered_rate": rate, "duration_s": p.duration_s,
                              "log_append_time": log_append}
    try:
        ready = await wait_until(lambda: worker_ready(port), 90, every_s=0.25)
        if not ready:
            raise RuntimeError(f"worker not ready after 90 s (log: {worker.log_path})")
        await producer.report("warmup", "cpu_seconds", "1", id="warmup")
        await producer.flush()
        await wait_until(lambda: worker_events(port) >= 1, 60, every_s=0.2)
        await tail_ready.wait()
        base_events = worker_events(port)
        per_cust: dict[str, int] = {}
        sent = 0
        cpu = _CpuMeter(worker.proc.pid, broker_pid)
        began = time.monotonic()
        end_at = began + p.duration_s
        g, k = p.group, p.per_customer
        while (now_s := time.monotonic()) < end_at:
            due = min(int((now_s - began) * rate) + 1, int(p.duration_s * rate))
            # Send what is due, re-checking the clock every 100 sends: a producer that
            # cannot keep up must not stretch the run past its duration.
            while sent < due and (sent % 100 or time.monotonic() < end_at):
                c = f"r{rate}-c{(sent % g) + g * (sent // (g * k))}"
                await producer.report(c, "gpu_seconds", VALUE, id=f"l{rate}-{sent}",
                                      timestamp=int(time.time() * 1000))
                per_cust[c] = per_cust.get(c, 0) + 1
                sent += 1
            await asyncio.sleep(PACE_S)
        load_s = time.monotonic() - began
        load_end_ms = int(time.time() * 1000)
        cores = cpu.cores()
        await producer.flush()
        processed_at_end = worker_events(port) - base_events
        # How long after the load stopped the worker had processed every event sent: what
        # was in flight then, or queued. "No backlog at the end" reads this figure.
        caught_up = await wait_until(lambda: worker_events(port) - base_events >= sent,
                                     p.wait_s, every_s=0.02)
        caught_up_ms = int(time.time() * 1000) - load_end_ms if caught_up else None
        expected = sum(1 for n in per_cust.values() if n >= k)
        got = await wait_until(lambda: len(alerts) >= expected, p.wait_s, every_s=0.1)
        waited_until_ms = int(time.time() * 1000)
        processed_total = worker_events(port) - base_events
        after_s = time.monotonic() - began - load_s
        rss = proc_status(worker.proc.pid)
        lat = sorted(float(a_ms - e_ms) for e_ms, a_ms, _t in alerts.values())
        missing = expected - len(alerts)
        result.update({
            "events_sent": sent,
            "achieved_offered_rate": sent / load_s,
            "worker_rate_during_load": processed_at_end / load_s,
            "backlog_at_load_end": max(0, sent - int(processed_at_end)),
            "caught_up_after_load_ms": caught_up_ms,
            "worker_processed_by_end_of_wait": int(processed_total),
            "wait_after_load_s": round(after_s, 2),
            "alerts_expected": expected,
            "alerts_received": len(alerts),
            "alerts_missing": missing,
            "all_alerts_received": got,
            "p50_ms": percentile(lat, 0.50),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": lat[-1] if lat else None,
            "mean_ms": sum(lat) / len(lat) if lat else None,
            # Missing alerts were not appended by the end of the wait, so each one's
            # latency is at least this (its event was produced before the load ended).
            "missing_latency_at_least_ms": (waited_until_ms - load_end_ms
                                            if missing else None),
            "timestamp_type": ("LogAppendTime" if alerts and all(t == 1 for *_x, t in
                                                                 alerts.values())
                               else "CreateTime" if alerts else None),
            "worker_rss_bytes": rss.get("VmRSS"),
            # CPU during the load, in cores (CPU seconds / load seconds); None where /proc
            # has no figure.
            "cpu_cores_during_load": cores,
            "series": _series(alerts),
        })
        log(f"latency: {rate}/s offered ({result['achieved_offered_rate']:,.0f} achieved), "
            f"worker {result['worker_rate_during_load']:,.0f}/s, cores {cores}, "
            f"alerts {len(alerts)}/{expected}, p50 {result['p50_ms']} p99 {result['p99_ms']} "
            f"max {result['max_ms']} ms")
    finally:
        stop.set()
        await producer.close()
        await tail
        worker.stop(timeout_s=30)
    return result


def _proc_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (from /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CpuMeter:
    """The CPU the worker, the broker and this process take from now to :meth:`cores`."""

    def __init__(self, worker_pid: int, broker_pid: int | None) -> None:
        self._pids = {"worker": worker_pid, "broker": broker_pid, "harness": os.getpid()}
        self._start = {name: _proc_cpu_s(pid) for name, pid in self._pids.items()}
        self._t = time.monotonic()

    def cores(self) -> dict[str, float | None]:
        wall = time.monotonic() - self._t
        out: dict[str, float | None] = {}
        for name, pid in self._pids.items():
            before, after = self._start[name], _proc_cpu_s(pid)
            out[name] = (None if before is None or after is None
                         else round((after - before) / wall, 2))
        return out


def _series(alerts: dict[str, tuple[int, int, int]], points: int = 400) -> list[list[float]]:
    """(seconds since the first crossing event, latency ms), at most ``points`` of them."""
    rows = sorted((e, a - e) for e, a, _t in alerts.values())
    if not rows:
        return []
    step = max(1, len(rows) // points)
    t0 = rows[0][0]
    return [[round((e - t0) / 1000, 3), float(lat)] for e, lat in rows[::step]]


async def run_latency(bootstrap: str, workdir: Path, p: LatencyParams,
                      log: Any = print, broker_pid: int | None = None) -> dict[str, Any]:
    """Every rate of ``p``; ``broker_pid`` (a broker on this machine) adds its CPU."""
    runs = []
    if p.warm_up_s > 0:
        warm = await run_one(bootstrap, workdir / "warm-up", WARM_UP_RATE,
                             replace(p, duration_s=p.warm_up_s), log, broker_pid)
        log(f"latency: warm-up done (p99 {warm.get('p99_ms')} ms, not reported)")
    for rate in p.rates:
        try:
            runs.append(await run_one(bootstrap, workdir, rate, p, log, broker_pid))
        except Exception as exc:  # one load failing must not hide the others' figures
            log(f"latency: {rate}/s failed: {exc!r}")
            runs.append({"offered_rate": rate, "error": repr(exc)})
    return {"params": asdict(p), "runs": runs}
