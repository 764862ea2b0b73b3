"""Run the fake Stripe as a process.

    python -m streams.fakes.stripe --port 12111 --fault-429 0.2 --fault-500 0.05 \\
        --fault-timeout 0.02 --fault-drop 0.0 --seed 1

Prints ``fakestripe listening on http://HOST:PORT`` once it accepts connections (with
``--port 0`` the port is picked by the OS), and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from streams.fakes.server import add_server_arguments, faults_from_args, serve_until_signalled
from streams.fakes.stripe.app import FakeStripe
from streams.fakes.stripe.config import FakeStripeConfig, MeterConfig, default_meters

ADMIN_API = """\
Stripe endpoints served: POST /v1/billing/meter_events, GET /v1/billing/meters[/{id}],
GET /v1/billing/meters/{id}/event_summaries, POST /v1/billing/meter_event_adjustments,
POST /v2/billing/meter_event_session, POST /v2/billing/meter_event_stream.

Admin API (JSON; not Stripe's, for tests; docs/fakestripe.md):
  GET  /_fake/ledger   what was billed: {"accepted", "duplicates_rejected", "cancelled",
                       "totals": [{"customer", "event_name", "total"}],
                       "window_totals": [...], "identifiers": [...]}; totals are exact
                       decimal strings
  GET  /_fake/stats    requests by status, events accepted, faults injected
  GET  /_fake/errors   events Stripe would refuse asynchronously (error reports)
  POST /_fake/faults   set the fault mix, e.g. {"rate_429": 0.2, "rate_500": 0.05,
                       "rate_timeout": 0.0, "rate_drop": 0.0, "latency_s": 0.0,
                       "retry_after_s": 1.0, "seed": 7}; fields left out keep their
                       value, "seed" restarts the fault RNG; answers the faults in force
  POST /_fake/down     {"mode": "503"|"refuse"|"up", "for_s": 30}: answer every request
                       with 503, or refuse connections, optionally for a while

Example:
  curl -s -XPOST localhost:12111/_fake/faults -d '{"rate_429": 0.3}'
  curl -s localhost:12111/_fake/ledger | jq .totals
"""


def _meter(spec: str) -> MeterConfig:
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError("expected ID:EVENT_NAME[:FORMULA[:WINDOW]]")
    formula = parts[2] if len(parts) > 2 else "sum"
    window = parts[3] if len(parts) > 3 else "none"
    try:
        return MeterConfig(id=parts[0], event_name=parts[1], formula=formula,  # type: ignore[arg-type]
                           event_time_window=window)  # type: ignore[arg-type]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: Sequence[str] | None = None) -> FakeStripeConfig:
    p = argparse.ArgumentParser(prog="python -m streams.fakes.stripe", description=__doc__,
                                epilog=ADMIN_API,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(p, port=12111, requests="meter-event requests")
    p.add_argument("--meter", type=_meter, action="append", metavar="ID:EVENT[:FORMULA[:WINDOW]]",
                   help="a meter (repeatable); FORMULA sum|count|last, WINDOW none|hour|day. "
                        "Default: sum meters cpu_seconds, gpu_seconds, memory_gb_seconds, "
                        "executions")
    p.add_argument("--api-key", default=None,
                   help="the only accepted key (default: any sk_test_/rk_test_ key)")
    p.add_argument("--lenient", action="store_true",
                   help="accept (200) what Stripe validates asynchronously, as Stripe does")
    p.add_argument("--reject-negative", action="store_true", help="reject negative values")
    a = p.parse_args(argv)
    try:
        faults = faults_from_args(a)
        return FakeStripeConfig(
            meters=tuple(a.meter) if a.meter else default_meters(), api_key=a.api_key,
            host=a.host, port=a.port, seed=a.seed, faults=faults, strict=not a.lenient,
            allow_negative_values=not a.reject_negative,
        )
    except ValueError as exc:
        p.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    asyncio.run(serve_until_signalled(lambda: FakeStripe(config), "fakestripe"))


if __name__ == "__main__":
    main()
