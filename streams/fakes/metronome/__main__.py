"""Run the fake Metronome as a process.

    python -m streams.fakes.metronome --port 12112 --fault-429 0.2 \\
        --fault-500 0.05 --fault-timeout 0.02 --fault-drop 0.01 --seed 1

Serves ``POST /v1/ingest``, ``POST /v1/usage``, ``GET /v1/billable-metrics`` and
``GET /v1/customers`` as Metronome does (see docs/metronome.md for what the fake checks),
plus the admin API under ``/_fake/`` (ledger, events, stats, rejected requests, faults,
down switch). Prints ``fakemetronome listening on http://HOST:PORT`` once it accepts
connections (``--port 0`` lets the OS pick), and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from streams.fakes.metronome.app import FakeMetronome
from streams.fakes.metronome.config import (
    BillableMetric,
    FakeCustomer,
    FakeMetronomeConfig,
    Faults,
    default_metrics,
)


def _metric(spec: str) -> BillableMetric:
    parts = spec.split(":")
    if not 3 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError("expected ID:NAME:EVENT_TYPE[:SUM|COUNT]")
    try:
        return BillableMetric(id=parts[0], name=parts[1], event_type=parts[2],
                              aggregation_type=parts[3] if len(parts) > 3 else "SUM")  # type: ignore[arg-type]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _customer(spec: str) -> FakeCustomer:
    cid, _, aliases = spec.partition(":")
    if not cid:
        raise argparse.ArgumentTypeError("expected ID[:ALIAS[,ALIAS...]]")
    return FakeCustomer(id=cid, ingest_aliases=tuple(a for a in aliases.split(",") if a))


def parse_args(argv: Sequence[str] | None = None) -> FakeMetronomeConfig:
    p = argparse.ArgumentParser(prog="python -m streams.fakes.metronome",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=12112, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    p.add_argument("--fault-429", type=float, default=0.0, metavar="RATE",
                   help="share of ingest requests answered 429 (not applied)")
    p.add_argument("--fault-500", type=float, default=0.0, metavar="RATE",
                   help="share of ingest requests answered 500 (not applied)")
    p.add_argument("--fault-timeout", type=float, default=0.0, metavar="RATE",
                   help="share held for --timeout-hold-s, applied or not")
    p.add_argument("--fault-drop", type=float, default=0.0, metavar="RATE",
                   help="share whose connection is closed without an answer, applied or not")
    p.add_argument("--timeout-hold-s", type=float, default=30.0,
                   help="how long a timeout fault holds the request (default 30)")
    p.add_argument("--applied-probability", type=float, default=0.5,
                   help="chance that a timed-out or dropped request was applied (default 0.5)")
    p.add_argument("--latency-s", type=float, default=0.0, help="delay of every ingest")
    p.add_argument("--retry-after-s", type=float, default=None,
                   help="send Retry-After with 429 answers")
    p.add_argument("--metric", type=_metric, action="append",
                   metavar="ID:NAME:EVENT_TYPE[:SUM|COUNT]",
                   help="a billable metric (repeatable; SUM adds the property 'value'). "
                        "Default: SUM metrics cpu_seconds, gpu_seconds, memory_gb_seconds, "
                        "executions, each over the event type of its name")
    p.add_argument("--customer", type=_customer, action="append", metavar="ID[:ALIAS,...]",
                   help="a Metronome customer and its ingest aliases (repeatable). Without "
                        "any, every customer_id is a customer of its own")
    p.add_argument("--api-token", default=None,
                   help="the only accepted bearer token (default: any non-empty token)")
    a = p.parse_args(argv)
    try:
        faults = Faults(rate_429=a.fault_429, rate_500=a.fault_500, rate_timeout=a.fault_timeout,
                        rate_drop=a.fault_drop, timeout_hold_s=a.timeout_hold_s,
                        applied_probability=a.applied_probability, latency_s=a.latency_s,
                        retry_after_s=a.retry_after_s)
        return FakeMetronomeConfig(
            billable_metrics=tuple(a.metric) if a.metric else default_metrics(),
            customers=tuple(a.customer) if a.customer else None, api_token=a.api_token,
            host=a.host, port=a.port, seed=a.seed, faults=faults)
    except ValueError as exc:
        p.error(str(exc))


async def serve(config: FakeMetronomeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeMetronome(config) as fake:
        print(f"fakemetronome listening on {fake.url}", flush=True)
        await stop.wait()
        print(f"fakemetronome stopping: {fake.stats}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
