"""Scale: worker throughput, resident memory, RocksDB size and recovery time with the
state of N customers.

For each N a fresh pipeline gets N pre-loaded records, one per customer, each a packed
array of one event per meter (4 events), all in the current hour, so the state ends up
with N customers x 4 open window records plus spend and dedup records. One worker builds
that state (timed from its first processed event to the last, polled from /metrics
every 0.25 s, with its RSS). Then it is restarted three ways, each timed from the
restart to /ready and to the first new event processed:

- ``sigkill``: killed with SIGKILL and started again at once (same instance id): it keeps
  its local RocksDB and restores only the changelog tail past the offset it records;
- ``sigterm``: stopped cleanly and started again;
- ``cold``: stopped, its state directory deleted, started again: the whole changelog is
  restored; its rate (changelog records per second) is taken from the worker's log.

Every phase is bounded in time; a build that does not finish reports the events it
processed and its rate, and the recovery is still measured on the partial state.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    PARTITIONS,
    dir_size,
    proc_status,
    produce_records,
    wait_until,
    worker_events,
    worker_ready,
)
from streams.kafka.local.process import free_ports
from streams.testing.pipeline import PipelineEnv, WorkerProcess

METERS = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")


@dataclass
class ScaleParams:
    customers: list[int]
    build_timeout_s: float = 600.0
    recovery_timeout_s: float = 300.0


def _records(n: int, now_ms: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        c = f"s{i:07d}"
        out.append((c.encode(), orjson.dumps([
            {"id": f"e{i}-{m}", "customer": c, "meter": m, "value": "1", "timestamp": now_ms}
            for m in METERS])))
    return out


async def run_one(bootstrap: str, workdir: Path, customers: int, p: ScaleParams,
                  log: Any = print) -> dict[str, Any]:
    env = PipelineEnv(bootstrap, workdir / f"c{customers}", partitions=PARTITIONS,
                      window_s=3600, grace_s=5, idle_close_after_s=60)
    os.makedirs(env.workdir, exist_ok=True)
    await env.create_topics()
    topic = env.settings().topics.events
    # Event time a minute ago: in the current hour's window unless the hour just turned,
    # which only changes which window the records land in, not how many.
    records = _records(customers, int(time.time() * 1000) - 60_000)
    produce_s = await produce_records(bootstrap, topic, records)
    del records
    expected = customers * len(METERS)
    (port,) = free_ports(1)
    launched = time.monotonic()
    worker = env.start_worker("s1", web_port=port)
    res: dict[str, Any] = {"customers": customers, "events": expected,
                           "produce_s": round(produce_s, 2)}
    try:
        first = None
        last_idle = launched  # the last poll that saw nothing processed yet
        rss_samples: list[int] = []
        processed = 0.0
        deadline = launched + p.build_timeout_s
        while time.monotonic() < deadline and worker.alive():
            processed = worker_events(port)
            if first is None and processed > 0:
                first = time.monotonic()
            elif first is None:
                last_idle = time.monotonic()
            rss = proc_status(worker.proc.pid).get("VmRSS")
            if rss:
                rss_samples.append(rss)
            if processed >= expected:
                break
            await asyncio.sleep(0.25)
        done = time.monotonic() if processed >= expected else None
        build_s = (done - first) if done and first else None
        # A build that ends between two polls is timed from the poll before it began: an
        # upper bound on its time, so its rate is a lower bound (flagged below).
        too_fast = build_s is not None and build_s < 0.5 and done is not None
        if too_fast and done is not None:
            build_s = done - last_idle
        await asyncio.sleep(3)  # the last batches commit
        status = proc_status(worker.proc.pid)
        res.update({
            "build_done": done is not None,
            "processed": int(processed),
            "build_s": round(build_s, 2) if build_s else None,
            "events_per_s_is_lower_bound": too_fast,
            "events_per_s": (expected / build_s if build_s
                             else (processed / (time.monotonic() - first) if first else None)),
            "rss_after_build_bytes": status.get("VmRSS"),
            "peak_rss_bytes": status.get("VmHWM"),
            "rss_samples_max_bytes": max(rss_samples) if rss_samples else None,
            "state_dir_bytes": dir_size(worker.state_dir),
        })
        log(f"scale: {customers} customers: build "
            f"{'done' if done else 'NOT done'} in {res['build_s']} s "
            f"({res['events_per_s'] or 0:,.0f} events/s), RSS "
            f"{(res['rss_after_build_bytes'] or 0) / 2**20:.0f} MiB, state "
            f"{res['state_dir_bytes'] / 2**20:.1f} MiB")
        worker, restarts = await _restarts(env, worker, port, topic, bootstrap, p, log,
                                           customers)
        res.update(restarts)
        status = proc_status(worker.proc.pid)
        res.update({
            "recovery_to_ready_s": restarts.get("sigkill_to_ready_s"),
            "recovery_to_first_event_s": restarts.get("sigkill_to_first_event_s"),
            "recovery_timeout_s": p.recovery_timeout_s,
            "rss_after_recovery_bytes": status.get("VmRSS"),
            "state_dir_after_recovery_bytes": dir_size(worker.state_dir),
        })
    finally:
        env.stop_all()
    return res


_RESTORED = re.compile(r"restored (\d+) changelog records in ([0-9.]+) s")


async def _restarts(env: PipelineEnv, worker: WorkerProcess, port: int, topic: str,
                    bootstrap: str, p: ScaleParams, log: Any,
                    customers: int) -> tuple[WorkerProcess, dict[str, Any]]:
    """Restart the worker three ways (sigkill, sigterm, cold); time each to /ready and
    to its first new event."""
    out: dict[str, Any] = {}
    for kind in ("sigkill", "sigterm", "cold"):
        if kind == "sigkill":
            worker.kill()
        else:
            worker.stop(timeout_s=60)
        if kind == "cold":
            shutil.rmtree(worker.state_dir, ignore_errors=True)
        log_start = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        restart = time.monotonic()
        worker = env.start_worker("s1", web_port=port)
        ready = await wait_until(lambda: worker_ready(port), p.recovery_timeout_s,
                                 every_s=0.1)
        ready_s = time.monotonic() - restart if ready else None
        first_event_s = None
        if ready:
            before = worker_events(port)
            await produce_records(bootstrap, topic, [(b"s0000000", orjson.dumps(
                {"id": f"probe-{kind}", "customer": "s0000000", "meter": "cpu_seconds",
                 "value": "1", "timestamp": int(time.time() * 1000)}))])
            if await wait_until(lambda b=before: worker_events(port) > b,  # type: ignore[misc]
                                60, every_s=0.05):
                first_event_s = time.monotonic() - restart
        with worker.log_path.open("rb") as f:
            f.seek(log_start)
            text = f.read().decode(errors="replace")
        restored = [(int(n), float(t)) for n, t in _RESTORED.findall(text)]
        records = sum(n for n, _ in restored)
        seconds = sum(t for _, t in restored)
        out[f"{kind}_to_ready_s"] = round(ready_s, 2) if ready_s else None
        out[f"{kind}_to_first_event_s"] = round(first_event_s, 2) if first_event_s else None
        out[f"{kind}_restored_records"] = records
        out[f"{kind}_restore_s"] = round(seconds, 2)
        if kind == "cold" and seconds > 0:
            out["cold_restore_records_per_s"] = round(records / seconds)
        log(f"scale: {customers} customers: {kind} restart ready in {out[f'{kind}_to_ready_s']}"
            f" s, first event {out[f'{kind}_to_first_event_s']} s, restored {records:,} "
            f"changelog records in {seconds:.2f} s")
    return worker, out


async def run_scale(bootstrap: str, workdir: Path, p: ScaleParams,
                    log: Any = print) -> dict[str, Any]:
    runs = []
    for n in p.customers:
        try:
            runs.append(await run_one(bootstrap, workdir, n, p, log))
        except Exception as exc:  # report the sizes that worked
            log(f"scale: {n} customers failed: {exc!r}")
            runs.append({"customers": n, "error": repr(exc)})
    rss = [r["rss_after_build_bytes"] for r in runs if r.get("rss_after_build_bytes")]
    return {"params": asdict(p), "runs": runs,
            "rss_growth_max_over_min": (max(rss) / min(rss)) if len(rss) >= 2 else None}
