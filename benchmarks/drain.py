"""Drain throughput: N pre-loaded events, five contenders, the same topic, one at a time.

For each record layout (single events, packed arrays) one workload is produced once to
one topic (4 partitions), then each contender drains it from the beginning in its own
process, with its own consumer group / app id and state dir, while nothing else of the
harness runs:

* ``raw_floor``: aiokafka consumer, fetch + orjson decode only (the Python limit);
* ``faust_floor``: a Faust agent taking batches as the worker does, decoding and counting
  only (the ceiling Faust's delivery puts on any Faust app);
* ``meterstream``: ``meterstream worker``; done when the summaries of every window are out
  and their totals equal the ground truth (read from usage.summaries);
* ``naive_faust``: tutorial-style ``table[key] += value`` per event on a RocksDB table;
* ``quix``: Quix Streams, tumbling-window sum per customer and meter, final windows.

Throughput = workload events / (done - first event consumed). The first-event time of
the contender apps is taken inside them. meterstream's is the earlier of two polls, every
100 ms: /metrics showing a first event, and /ready (partitions assigned and restored: it
fetches at once, the topic being pre-loaded). /metrics alone answers late when the worker
is busy: its web server shares the event loop with the batches, and a packed drain once
saw its first event 18 ms before the end. Counting from /ready charges meterstream its
first fetch, so the figure is a floor. Each run is bounded by ``timeout_s``; a run that does not
finish reports what it processed and the rate it achieved.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.common import (
    CLOSER_PREFIX,
    GRACE_S,
    PARTITIONS,
    WINDOW_S,
    DrainWorkload,
    app_command,
    dir_size,
    proc_status,
    produce_records,
    spawn,
    worker_events,
    worker_ready,
    write_json,
)
from benchmarks.profile import summarize_collapsed
from streams.kafka.local.process import ChildProcess, free_ports
from streams.testing.pipeline import PipelineEnv

CONTENDERS = ("raw_floor", "faust_floor", "meterstream", "naive_faust", "quix")
APP_MODULES = {
    "raw_floor": "benchmarks.apps.raw_floor",
    "faust_floor": "benchmarks.apps.faust_floor",
    "naive_faust": "benchmarks.apps.naive_faust",
    "quix": "benchmarks.apps.quix_app",
}


@dataclass
class DrainParams:
    events: int
    customers: int
    packs: list[int]
    span_s: int = 600
    repeats: int = 1
    timeout_s: float = 120.0
    contenders: tuple[str, ...] = CONTENDERS
    profile: bool = False


@dataclass
class DrainRun:
    contender: str
    pack: int
    repeat: int
    events: int
    records: int
    ok: bool
    totals_equal: bool | None
    events_per_s: float | None
    records_per_s: float | None
    drain_s: float | None
    launch_to_done_s: float | None
    processed: int
    peak_rss_bytes: int | None
    state_bytes: int | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _rate(n: int, first: float | None, done: float | None) -> float | None:
    if first is None or done is None or done <= first:
        return None
    return n / (done - first)


async def _app_run(contender: str, bootstrap: str, topic: str, wl: DrainWorkload,
                   workdir: Path, truth_path: Path, repeat: int, timeout_s: float) -> DrainRun:
    tag = f"{contender}-p{wl.pack}-r{repeat}-{uuid.uuid4().hex[:6]}"
    state_dir = workdir / f"state-{tag}"
    result_path = workdir / f"result-{tag}.json"
    cmd = app_command(APP_MODULES[contender], {
        "bootstrap": bootstrap, "topic": topic, "group": f"bench-{tag}",
        "state_dir": state_dir, "truth": truth_path, "result": result_path,
        "partitions": PARTITIONS, "window_ms": WINDOW_S * 1000, "grace_ms": GRACE_S * 1000,
    })
    launched = time.time()
    proc = spawn(cmd, workdir / f"{tag}.log")
    peak = 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not result_path.exists() and proc.alive():
            peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
            await asyncio.sleep(0.1)
        peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
        timed_out = not result_path.exists()
    finally:
        proc.stop(timeout_s=30.0)
    state = dir_size(state_dir) if state_dir.exists() else None
    if not result_path.exists():
        code = proc.returncode
        return DrainRun(contender, wl.pack, repeat, wl.truth.events_sent, wl.truth.records,
                        False, None, None, None, None, None, 0, peak or None, state,
                        note=(f"no result within {timeout_s:.0f}s" if timed_out
                              else f"exited with code {code}; see {tag}.log"))
    res = orjson.loads(result_path.read_bytes())
    first, done = res.get("first_event_s"), res.get("done_s")
    ok = done is not None and res.get("totals_equal") is not False
    n = wl.truth.events_sent
    rate = _rate(n, first, done) if ok else _rate(int(res.get("events", 0)), first, time.time())
    records_rate = _rate(wl.truth.records, first, done) if ok else None
    if ok and res.get("all_passes_events_per_s"):
        # The raw floor re-reads the topic for a steadier figure (apps/raw_floor.py).
        rate = float(res["all_passes_events_per_s"])
        records_rate = rate * wl.truth.records / n
    return DrainRun(
        contender, wl.pack, repeat, n, wl.truth.records, ok, res.get("totals_equal"),
        rate, records_rate,
        (done - first) if ok and first else None,
        (done - launched) if ok else None,
        int(res.get("events", 0)), peak or None, state,
        note="" if ok else f"not done: {res.get('events', 0)} events consumed, totals "
                           f"equal={res.get('totals_equal')} (timeout {timeout_s:.0f}s)",
        extra={k: v for k, v in res.items()
               if k in ("keys", "passes", "first_pass_events_per_s", "all_passes_events")},
    )


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


async def _summaries_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def _watch_summaries(bootstrap: str, topic: str, start: dict[int, int],
                           expected: dict[str, int], stop: asyncio.Event) -> float | None:
    """Read summaries from ``start``; return the produce time (s) of the summary with
    which the distinct summaries' totals first equal ``expected``, or None if stopped."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, start.get(tp.partition, 0))
        seen: set[str] = set()
        totals: dict[str, int] = {}
        expected_sum = sum(expected.values())
        running = 0
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            last_ts: float | None = None
            for msgs in batch.values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    if doc["id"] in seen or doc["customer"].startswith(CLOSER_PREFIX):
                        continue
                    seen.add(doc["id"])
                    k = f"{doc['customer']}|{doc['meter']}"
                    d = int(Decimal(doc["delta"]) * 1000)
                    totals[k] = totals.get(k, 0) + d
                    running += d
                    ts = m.timestamp / 1000
                    last_ts = ts if last_ts is None else max(last_ts, ts)
            if last_ts is not None and running == expected_sum and totals == expected:
                return last_ts
        return None
    finally:
        await consumer.stop()


async def _meterstream_run(env: PipelineEnv, wl: DrainWorkload, workdir: Path, repeat: int,
                           timeout_s: float, profile_dir: Path | None) -> DrainRun:
    settings = env.settings()
    start = await _summaries_offsets(env.bootstrap, settings.topics.summaries)
    expected = {k: v for k, v in wl.truth_doc()["totals_milli"].items()}
    tag = f"ms-p{wl.pack}-r{repeat}"
    env.extra_env["METERSTREAM_WORKER__APP_ID"] = f"{env.prefix}-{tag}-{uuid.uuid4().hex[:6]}"
    (port,) = free_ports(1)
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_summaries(
        env.bootstrap, settings.topics.summaries, start, expected, stop))
    launched = time.time()
    worker = env.start_worker(tag, web_port=port)
    first: float | None = None
    ready_at: float | None = None
    done: float | None = None
    peak = 0
    spy: ChildProcess | None = None
    spy_started: float | None = None
    spy_stopped: float | None = None
    spy_out = profile_dir / f"meterstream-p{wl.pack}.collapsed" if profile_dir else None
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and worker.alive() and not watcher.done():
            if ready_at is None and worker_ready(port):
                ready_at = time.time()
            if first is None and worker_events(port) > 0:
                first = time.time()
                if spy_out is not None:
                    spy_out.parent.mkdir(parents=True, exist_ok=True)
                    # --native: the compiled core's functions are C frames (CPyDef_...);
                    # py-spy reads native stacks only while it pauses the process.
                    spy_out.unlink(missing_ok=True)
                    spy = spawn([_py_spy(), "record", "--pid", str(worker.proc.pid), "--rate",
                                 "100", "--native", "--format", "raw",
                                 "--output", str(spy_out)], workdir / "py-spy.log")
                    spy_started = time.monotonic()
            peak = max(peak, proc_status(worker.proc.pid).get("VmHWM", 0))
            await asyncio.sleep(0.1)
        if watcher.done():
            done = watcher.result()
        processed = int(worker_events(port)) if worker.alive() else 0
        peak = max(peak, proc_status(worker.proc.pid).get("VmHWM", 0))
    finally:
        stop.set()
        if spy is not None and spy.alive():
            spy_stopped = time.monotonic()
            spy.proc.send_signal(signal.SIGINT)
            if not spy.wait(30):
                spy.kill()
        if not watcher.done():
            await watcher
        worker.stop(timeout_s=30)
    state = dir_size(worker.state_dir) if worker.state_dir.exists() else None
    n = wl.truth.events_sent
    ok = done is not None
    extra: dict[str, Any] = {}
    if spy_out is not None and spy_out.exists():
        extra["profile"] = summarize_collapsed(spy_out)
        if spy_started is not None and spy_stopped is not None:
            extra["profile"]["busy_share_of_one_core"] = round(
                extra["profile"]["busy_samples"] / (100 * (spy_stopped - spy_started)), 3)
    if ready_at is not None and (first is None or ready_at < first):
        first = ready_at  # (see the module doc: a floor)
    if done is not None and (first is None or done < first):
        # The drain ended before any poll answered: count from the launch (a floor too).
        first = launched
    return DrainRun(
        "meterstream", wl.pack, repeat, n, wl.truth.records, ok, True if ok else None,
        _rate(n, first, done) if ok else _rate(processed, first, time.time()),
        _rate(wl.truth.records, first, done) if ok else None,
        (done - first) if ok and first else None, (done - launched) if ok else None,
        n if ok else processed, peak or None, state,
        note="" if ok else (f"not done within {timeout_s:.0f}s: {processed} events processed"
                            if worker.proc.returncode in (None, 0, -15)
                            else f"worker exited {worker.proc.returncode}"),
        extra=extra,
    )


async def run_drain(bootstrap: str, workdir: Path, params: DrainParams,
                    log: Any = print) -> dict[str, Any]:
    runs: list[DrainRun] = []
    workloads: list[dict[str, Any]] = []
    for pack in params.packs:
        wl = DrainWorkload(events=params.events, customers=params.customers, pack=pack,
                           span_s=params.span_s)
        wl.build()
        env = PipelineEnv(bootstrap, workdir / f"pack{pack}", partitions=PARTITIONS,
                          window_s=WINDOW_S, grace_s=GRACE_S, idle_close_after_s=3600)
        os.makedirs(env.workdir, exist_ok=True)
        await env.create_topics()
        topic = env.settings().topics.events
        produce_s = await produce_records(bootstrap, topic, wl.records, wl.closers)
        truth_path = env.workdir / "truth.json"
        write_json(truth_path, wl.truth_doc())
        workloads.append({"pack": pack, "events": wl.truth.events_sent,
                          "records": wl.truth.records, "customers": params.customers,
                          "span_s": params.span_s, "linger_ms": wl.linger_ms,
                          "keys": len(wl.truth.totals), "produce_s": round(produce_s, 2),
                          "topic": topic})
        log(f"drain: pack={pack}: {wl.truth.events_sent} events in {wl.truth.records} records "
            f"pre-loaded in {produce_s:.1f}s")
        wl.records = []  # free memory; the truth stays
        for repeat in range(params.repeats):
            for contender in params.contenders:
                if contender == "meterstream":
                    run = await _meterstream_run(env, wl, env.workdir, repeat, params.timeout_s,
                                                 None)
                else:
                    run = await _app_run(contender, bootstrap, topic, wl, env.workdir,
                                         truth_path, repeat, params.timeout_s)
                runs.append(run)
                rate = f"{run.events_per_s:,.0f} events/s" if run.events_per_s else "n/a"
                log(f"drain: pack={pack} {contender} r{repeat}: {rate}"
                    f"{'' if run.ok else ' (NOT DONE: ' + run.note + ')'}")
        if params.profile and "meterstream" in params.contenders:
            try:
                prof = await _meterstream_run(env, wl, env.workdir, 99, params.timeout_s,
                                              workdir / "profile")
            except Exception as exc:  # the profile is extra: keep the measured runs
                log(f"drain: pack={pack} profiled run failed: {exc!r}")
            else:
                runs.append(DrainRun(**{**asdict(prof), "contender": "meterstream_profiled"}))
                log(f"drain: pack={pack} meterstream under py-spy: done={prof.ok}")
    return {"params": asdict(params), "workloads": workloads,
            "runs": [asdict(r) for r in runs], "summary": summarize(runs)}


def summarize(runs: list[DrainRun]) -> list[dict[str, Any]]:
    """Median per (pack, contender) over repeats, and the ratio to the raw floor and to
    meterstream of the same pack (ratios use the same run's figures)."""
    out: list[dict[str, Any]] = []
    packs = sorted({r.pack for r in runs})
    for pack in packs:
        med: dict[str, float | None] = {}
        for c in [*CONTENDERS, "meterstream_profiled"]:
            rates = [r.events_per_s for r in runs if r.pack == pack and r.contender == c
                     and r.ok and r.events_per_s]
            sel = [r for r in runs if r.pack == pack and r.contender == c]
            if not sel:
                continue
            med[c] = statistics.median(rates) if rates else None
            out.append({"pack": pack, "contender": c, "events_per_s": med[c],
                        "done": all(r.ok for r in sel), "runs": len(sel),
                        "achieved_events_per_s_if_not_done": None if rates else
                        max((r.events_per_s or 0.0) for r in sel),
                        "peak_rss_bytes": max((r.peak_rss_bytes or 0) for r in sel) or None,
                        "state_bytes": max((r.state_bytes or 0) for r in sel) or None})
        floor, ms = med.get("raw_floor"), med.get("meterstream")
        for row in out:
            if row["pack"] != pack:
                continue
            v = row["events_per_s"]
            row["ratio_to_raw_floor"] = v / floor if v and floor else None
            row["meterstream_over_this"] = ms / v if ms and v else None
    return out
