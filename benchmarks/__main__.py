"""``python -m benchmarks quick|full --out DIR`` (and ``loadgen``, = ``meterstream loadgen``).

quick: small workloads so the whole run stays under 5 minutes on a 2-core machine;
full: the issue's sizes (long). Both run core, drain, latency and scale (or ``--only`` some
of them) and write DIR/results.json, DIR/results.md and PNG plots. ``core`` needs no
broker (the core is driven directly, before any broker starts); the others start their
own (Apache Kafka from the project's jars, full JIT) unless ``--bootstrap`` names one.
Scratch data (topics' local state dirs, logs, raw profiles) goes to ``--workdir``
(default benchmarks/scratch/, gitignored) and is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine_info


@dataclass(frozen=True)
class Mode:
    drain_events: int
    drain_customers: int
    drain_packs: list[int]
    drain_span_s: int
    drain_repeats: int
    drain_timeout_s: float
    latency_rates: list[int]
    latency_duration_s: float
    latency_wait_s: float
    latency_warm_up_s: float
    scale_customers: list[int]
    scale_build_timeout_s: float
    scale_recovery_timeout_s: float
    core_repeats: int = 3


MODES = {
    "quick": Mode(
        drain_events=50_000, drain_customers=1_000, drain_packs=[1, 50], drain_span_s=120,
        drain_repeats=1, drain_timeout_s=90, latency_rates=[1_000, 10_000, 50_000],
        latency_duration_s=4, latency_wait_s=6, latency_warm_up_s=0,
        scale_customers=[500, 1_000, 2_000],
        scale_build_timeout_s=25, scale_recovery_timeout_s=60, core_repeats=7,
    ),
    "full": Mode(
        drain_events=200_000, drain_customers=10_000, drain_packs=[1, 50], drain_span_s=600,
        drain_repeats=3,
        drain_timeout_s=900, latency_rates=[1_000, 10_000, 50_000], latency_duration_s=30,
        latency_wait_s=120, latency_warm_up_s=120, scale_customers=[10_000, 100_000, 1_000_000],
        scale_build_timeout_s=1_800, scale_recovery_timeout_s=900, core_repeats=9,
    ),
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _run(bootstrap: str, mode: Mode, parts: set[str], workdir: Path, profile: bool,
               results: dict[str, Any], broker_pid: int | None = None) -> None:
    from benchmarks.drain import DrainParams, run_drain
    from benchmarks.latency import LatencyParams, run_latency
    from benchmarks.scale import ScaleParams, run_scale

    if "drain" in parts:
        results["drain"] = await run_drain(bootstrap, workdir / "drain", DrainParams(
            events=mode.drain_events, customers=mode.drain_customers, packs=mode.drain_packs,
            span_s=mode.drain_span_s,
            repeats=mode.drain_repeats, timeout_s=mode.drain_timeout_s, profile=profile,
        ), log=_log)
    if "latency" in parts:
        results["latency"] = await run_latency(bootstrap, workdir / "latency", LatencyParams(
            rates=mode.latency_rates, duration_s=mode.latency_duration_s,
            wait_s=mode.latency_wait_s, warm_up_s=mode.latency_warm_up_s), log=_log,
            broker_pid=broker_pid)
    if "scale" in parts:
        results["scale"] = await run_scale(bootstrap, workdir / "scale", ScaleParams(
            customers=mode.scale_customers, build_timeout_s=mode.scale_build_timeout_s,
            recovery_timeout_s=mode.scale_recovery_timeout_s), log=_log)


def _run_core(mode: Mode, workdir: Path, results: dict[str, Any]) -> None:
    from benchmarks.core_bench import CoreParams, run_core

    results["core"] = run_core(workdir / "core", CoreParams(
        events=mode.drain_events, customers=mode.drain_customers, packs=mode.drain_packs,
        span_s=mode.drain_span_s, repeats=mode.core_repeats), log=_log)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loadgen"]:
        from streams.cli import main as meterstream_main

        return meterstream_main(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--only", default="core,drain,latency,scale",
                        help="comma-separated subset of core,drain,latency,scale")
    parser.add_argument("--profile", action="store_true",
                        help="also drain once more with meterstream under py-spy")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "scratch" / "run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch workdir")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--drain-events", type=int, metavar="N",
                        help="drain N events instead of the mode's number")
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    if args.drain_events:
        mode = dataclasses.replace(mode, drain_events=args.drain_events,
                                   drain_timeout_s=max(mode.drain_timeout_s,
                                                       args.drain_events / 500))
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - {"core", "drain", "latency", "scale"}
    if unknown:
        parser.error(f"unknown --only parts: {sorted(unknown)}")
    workdir = args.workdir.resolve() / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "mode": args.mode, "mode_params": vars(mode), "started_at":
        time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(), "note": args.note,
    }
    began = time.monotonic()
    try:
        if "core" in parts:  # no broker: it is the core alone
            _run_core(mode, workdir, results)
        broker_parts = parts - {"core"}
        if broker_parts and args.bootstrap:
            results["broker"] = {"bootstrap": args.bootstrap, "started_here": False}
            asyncio.run(_run(args.bootstrap, mode, broker_parts, workdir, args.profile,
                             results))
        elif broker_parts:
            from streams.kafka.local import KafkaLocal

            with KafkaLocal(workdir / "kafka", quick_jit=False) as kafka:
                results["broker"] = {"started_here": True, "version": kafka.version,
                                     "startup_s": kafka.startup_s, "quick_jit": False}
                _log(f"broker {kafka.version} up at {kafka.bootstrap_servers}")
                asyncio.run(_run(kafka.bootstrap_servers, mode, broker_parts, workdir,
                                 args.profile, results, broker_pid=kafka.pid))
    finally:
        results["elapsed_s"] = round(time.monotonic() - began, 1)
        results["loadavg_at_end"] = list(os.getloadavg())
        from benchmarks.report import write

        write(results, args.out)
        profiles = sorted((workdir / "drain" / "profile").glob("*.collapsed"))
        if profiles and sum(f.stat().st_size for f in profiles) < 2**20:
            (args.out / "profile").mkdir(parents=True, exist_ok=True)
            for f in profiles:
                shutil.copy(f, args.out / "profile" / f.name)
        _log(f"results in {args.out} ({results['elapsed_s']} s)")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
