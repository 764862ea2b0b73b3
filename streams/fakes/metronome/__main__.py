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
from collections.abc import Sequence

from streams.fakes.metronome.app import FakeMetronome
from streams.fakes.metronome.config import (
    BillableMetric,
    FakeCustomer,
    FakeMetronomeConfig,
    default_metrics,
)
from streams.fakes.server import add_server_arguments, faults_from_args, serve_until_signalled


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
    add_server_arguments(p, port=12112, requests="ingest requests")
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
        faults = faults_from_args(a)
        return FakeMetronomeConfig(
            billable_metrics=tuple(a.metric) if a.metric else default_metrics(),
            customers=tuple(a.customer) if a.customer else None, api_token=a.api_token,
            host=a.host, port=a.port, seed=a.seed, faults=faults)
    except ValueError as exc:
        p.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    asyncio.run(serve_until_signalled(lambda: FakeMetronome(config), "fakemetronome"))


if __name__ == "__main__":
    main()
