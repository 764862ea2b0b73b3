"""Core throughput: the drain workloads fed straight to ``Aggregator.process``, no Kafka.

The same clean workloads as the drain benchmark (``common.DrainWorkload``: Zipf customers,
four meters, single and packed records, one closer record per partition) are split into
the 4 partitions by key, then into batches of about ``batch_events`` events per partition,
the way the worker's data plane hands them to the core. Contenders, one after another in
one process:

* ``decode_sum``: ``orjson.loads`` per record plus a dict sum per (customer, meter,
  window) in integer thousandths: the floor any Python core stands on;
* ``core_rocksdict``: ``Aggregator.process`` per batch against the worker's own local
  state (``streams.runtime.local_state.PartitionState``: a rocksdict database per
  partition under one memory budget, read through its view); each batch's writes are
  applied with the worker's one ``WriteBatch`` before the next batch;
* ``core_memory``: the same against ``MemoryState`` (a dict).

``events_per_s`` counts the CPU time (``time.process_time``) inside ``process`` only;
``events_per_s_with_writes`` adds applying the writes to the store; ``events_per_s_wall``
is the same as ``events_per_s`` by the wall clock. CPU time is the headline because the
machine is shared: five agents on two cores move wall-clock figures by half between
back-to-back runs, while CPU time moves far less, and the ratio to ``decode_sum`` (also in
CPU time, same run) is what the goals read: interleaved batch by batch with the core's
own (see ``summarize``). Every core run checks that its summaries add
up to the ground truth for every (customer, meter), so a fast wrong core does not count.
The workload is built before the clock starts, then every contender runs under the
worker's garbage-collector settings (``streams.runtime.dataplane.settle_collector``: what
exists is frozen out of the collector's reach, and young collections come every 50,000
allocations, not 700), as the worker runs the core. Frozen, the workload is not traversed
by a full collection either: a worker never holds 50,000 records at once, and the
collection would be charged to whichever contender happened to trigger it.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import CLOSER_PREFIX, GRACE_S, PARTITIONS, WINDOW_S, DrainWorkload
from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
from streams.core.pricing import MeterRule
from streams.loadgen.generate import DEFAULT_METERS
from streams.runtime.dataplane import settle_collector
from streams.runtime.local_state import MemoryBudget, PartitionState
from streams.testing.memory_state import MemoryState

CONTENDERS = ("decode_sum", "core_rocksdict", "core_memory")


@dataclass
class CoreParams:
    events: int
    customers: int
    packs: list[int]
    span_s: int = 600
    repeats: int = 1
    batch_events: int = 5_000
    contenders: tuple[str, ...] = CONTENDERS


@dataclass
class CoreRun:
    contender: str
    pack: int
    repeat: int
    events: int
    records: int
    batches: int
    ok: bool
    events_per_s: float
    events_per_s_with_writes: float | None
    events_per_s_wall: float
    process_s: float
    writes: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _apply_to(state: PartitionState) -> Callable[[list[tuple[str, bytes | None]]], None]:
    def apply(writes: list[tuple[str, bytes | None]]) -> None:
        state.apply(((key.encode(), value) for key, value in writes), 0)

    return apply


def core_config() -> CoreConfig:
    """The drain benchmark's worker settings, as the core sees them."""
    return CoreConfig(
        meters={m: MeterRule(m, agg, price) for m, agg, _max, price in DEFAULT_METERS},
        window_ms=WINDOW_S * 1000, grace_ms=GRACE_S * 1000,
    )


def partition_batches(wl: DrainWorkload, batch_events: int) -> dict[int, list[list[SourceRecord]]]:
    """Records split by key into partitions (closers where they belong), then into
    batches of about ``batch_events`` events, in offset order."""
    produced_ms = wl.end_ms + 240_000  # when the drain benchmark produces them
    per: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for key, value in wl.records:
        per[zlib.crc32(key) % PARTITIONS].append((key, value))
    for p, key, value in wl.closers:
        per[p].append((key, value))
    out: dict[int, list[list[SourceRecord]]] = {}
    for p, recs in per.items():
        batches: list[list[SourceRecord]] = [[]]
        n = 0
        for offset, (key, value) in enumerate(recs):
            count = value.count(b'"id"')
            if n and n + count > batch_events:
                batches.append([])
                n = 0
            batches[-1].append(SourceRecord(offset, produced_ms, key.decode(), value))
            n += count
        out[p] = batches
    return out


def _sum_into(sums: dict[tuple[str, str, int], int], values: list[bytes],
              window_ms: int) -> None:
    """The floor's work: decode each record and add its events to ``sums``."""
    loads = orjson.loads
    for value in values:
        obj = loads(value)
        for ev in obj if type(obj) is list else (obj,):
            whole, _, frac = ev["value"].partition(".")
            ts = ev["timestamp"]
            k = (ev["customer"], ev["meter"], ts - ts % window_ms)
            sums[k] = sums.get(k, 0) + int(whole) * 1000 + int((frac + "000")[:3])


def decode_sum(batches: dict[int, list[list[SourceRecord]]],
               window_ms: int) -> tuple[float, float]:
    """Seconds (CPU, wall) to decode every record and sum per (customer, meter, window)."""
    values = [r.value for bs in batches.values() for b in bs for r in b if r.value]
    began, began_wall = time.process_time(), time.perf_counter()
    _sum_into({}, values, window_ms)
    return time.process_time() - began, time.perf_counter() - began_wall


def _core_run(contender: str, wl: DrainWorkload, batches: dict[int, list[list[SourceRecord]]],
              workdir: Path, repeat: int) -> CoreRun:
    agg = Aggregator(core_config())
    now_ms = wl.end_ms + 240_000
    stores: dict[int, Any] = {}
    applies: dict[int, Callable[[list[tuple[str, bytes | None]]], None]] = {}
    dbs: list[PartitionState] = []
    if contender == "core_rocksdict":
        budget = MemoryBudget(256)  # the worker's default WORKER__ROCKSDB_MEMORY_MB
        for p in batches:
            path = workdir / f"rdict-p{wl.pack}-r{repeat}-{p}"
            shutil.rmtree(path, ignore_errors=True)
            state = PartitionState(path, budget)
            dbs.append(state)
            stores[p], applies[p] = state.view, _apply_to(state)
    else:
        for p in batches:
            mem = MemoryState()
            stores[p], applies[p] = mem, mem.apply
    process_s = apply_s = wall_s = floor_s = 0.0
    # The floor's work on each batch, timed just before the core takes the batch (see
    # summarize: the interleaved ratio).
    floor_values = {p: [[r.value for r in b if r.value] for b in bs]
                    for p, bs in batches.items()}
    floor_sums: dict[tuple[str, str, int], int] = {}
    writes = 0
    totals: dict[str, int] = {}
    n_batches = 0
    try:
        # Round-robin over partitions, as a worker owning all four would see them.
        longest = max(len(bs) for bs in batches.values())
        for i in range(longest):
            for p, bs in batches.items():
                if i >= len(bs):
                    continue
                f0 = time.process_time()
                _sum_into(floor_sums, floor_values[p][i], WINDOW_S * 1000)
                floor_s += time.process_time() - f0
                w0, t0 = time.perf_counter(), time.process_time()
                res = agg.process(p, bs[i], stores[p], now_ms=now_ms)
                t1, w1 = time.process_time(), time.perf_counter()
                applies[p](res.writes)
                apply_s += time.process_time() - t1
                process_s += t1 - t0
                wall_s += w1 - w0
                writes += len(res.writes)
                n_batches += 1
                for s in res.summaries:
                    if s["customer"].startswith(CLOSER_PREFIX):
                        continue
                    k = f"{s['customer']}|{s['meter']}"
                    totals[k] = totals.get(k, 0) + int(Decimal(s["delta"]) * 1000)
    finally:
        for db in dbs:
            db.close()
    ok = totals == wl.truth_doc()["totals_milli"]
    n = wl.truth.events_sent
    return CoreRun(contender, wl.pack, repeat, n, wl.truth.records, n_batches, ok,
                   n / process_s, n / (process_s + apply_s), n / wall_s, round(process_s, 4),
                   writes,
                   note="" if ok else "summaries do not add up to the ground truth",
                   extra={"interleaved_decode_sum_s": round(floor_s, 4)})


def run_core(workdir: Path, params: CoreParams, log: Any = print) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    thresholds = gc.get_threshold()
    runs: list[CoreRun] = []
    workloads: list[dict[str, Any]] = []
    for pack in params.packs:
        wl = DrainWorkload(events=params.events, customers=params.customers, pack=pack,
                           span_s=params.span_s)
        wl.build()
        batches = partition_batches(wl, params.batch_events)
        # The worker's collector settings; they also freeze the workload, which stays in
        # memory for the run as a worker's records never do.
        settle_collector()
        workloads.append({"pack": pack, "events": wl.truth.events_sent,
                          "records": wl.truth.records, "customers": params.customers,
                          "span_s": params.span_s, "batch_events": params.batch_events,
                          "batches": sum(len(b) for b in batches.values())})
        for repeat in range(params.repeats):
            for contender in params.contenders:
                if contender == "decode_sum":
                    seconds, wall = decode_sum(batches, WINDOW_S * 1000)
                    n = wl.truth.events_sent
                    run = CoreRun(contender, pack, repeat, n, wl.truth.records, 0, True,
                                  n / seconds, None, n / wall, round(seconds, 4))
                else:
                    run = _core_run(contender, wl, batches, workdir, repeat)
                runs.append(run)
                log(f"core: pack={pack} {contender} r{repeat}: {run.events_per_s:,.0f} events/s"
                    f"{'' if run.ok else ' (WRONG: ' + run.note + ')'}")
        gc.unfreeze()
    gc.set_threshold(*thresholds)
    return {"params": asdict(params), "workloads": workloads,
            "runs": [asdict(r) for r in runs], "summary": summarize(runs)}


def summarize(runs: list[CoreRun]) -> list[dict[str, Any]]:
    """Median per (pack, contender) over repeats, and the ratios to decode_sum.

    ``ratio_to_decode_sum`` is the median over repeats of each repeat's own ratio: a
    contender and the floor of one repeat run seconds apart, while the machine's speed
    drifts over the run (on a shared 2-core VM, by a third between minutes), so pairing
    them cancels most of the drift that a ratio of two medians would keep.

    ``ratio_interleaved`` pairs them closer still: a core run also times the floor's work
    on each batch just before the core takes that batch, milliseconds apart, and the ratio
    of a repeat is the floor's CPU seconds over the core's for the same events. A slow
    spell of the host (seconds long) then slows both sides of the ratio; apart, it lands on
    whichever runs during it, and the core, four times longer, is hit more often. The goals
    read this ratio when a run has it.
    """
    out: list[dict[str, Any]] = []
    for pack in sorted({r.pack for r in runs}):
        rows = []
        for c in CONTENDERS:
            sel = [r for r in runs if r.pack == pack and r.contender == c]
            if not sel:
                continue
            with_writes = [r.events_per_s_with_writes for r in sel if r.events_per_s_with_writes]
            interleaved = [r.extra["interleaved_decode_sum_s"] / r.process_s for r in sel
                           if r.extra.get("interleaved_decode_sum_s") and r.process_s > 0]
            rows.append({"pack": pack, "contender": c,
                         "events_per_s": statistics.median(r.events_per_s for r in sel),
                         "events_per_s_wall": statistics.median(r.events_per_s_wall for r in sel),
                         "events_per_s_with_writes":
                             statistics.median(with_writes) if with_writes else None,
                         "ratio_interleaved":
                             statistics.median(interleaved) if interleaved else None,
                         "ratio_interleaved_runs": [round(x, 4) for x in interleaved],
                         "correct": all(r.ok for r in sel), "runs": len(sel)})
        floors = {r.repeat: r for r in runs if r.pack == pack and r.contender == "decode_sum"}
        for row in rows:
            paired = [(r, floors[r.repeat]) for r in runs
                      if r.pack == pack and r.contender == row["contender"]
                      and r.repeat in floors]
            ratios = [r.events_per_s / f.events_per_s for r, f in paired]
            row["ratio_to_decode_sum"] = statistics.median(ratios) if ratios else None
            row["ratio_to_decode_sum_runs"] = [round(x, 4) for x in ratios]
            row["ratio_to_decode_sum_wall"] = (statistics.median(
                r.events_per_s_wall / f.events_per_s_wall for r, f in paired)
                if paired else None)
        out += rows
    return out
