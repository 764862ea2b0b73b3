"""Run the fake Stripe as a process.

    python -m streams.fakes.stripe --port 12111 --fault-429 0.2 --fault-500 0.05 \\
        --fault-timeout 0.02 --fault-drop 0.0 --seed 1

Prints ``fakestripe listening on http://HOST:PORT`` once it accepts connections (with
``--port 0`` the port is picked by the OS), and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from streams.fakes.stripe.app import FakeStripe
from streams.fakes.stripe.config import FakeStripeConfig, Faults, MeterConfig, default_meters

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
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    p.add_argument("--fault-429", type=float, default=0.0, metavar="RATE")
    p.add_argument("--fault-500", type=float, default=0.0, metavar="RATE")
    p.add_argument("--fault-timeout", type=float, default=0.0, metavar="RATE")
    p.add_argument("--fault-drop", type=float, default=0.0, metavar="RATE")
    p.add_argument("--timeout-hold-s", type=float, default=30.0,
                   help="how long a timeout fault holds the request (default 30)")
    p.add_argument("--applied-probability", type=float, default=0.5,
                   help="chance that a timed-out or dropped request was applied (default 0.5)")
    p.add_argument("--latency-s", type=float, default=0.0, help="delay of every event write")
    p.add_argument("--retry-after-s", type=float, default=None,
                   help="send Retry-After with 429 answers")
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
        faults = Faults(rate_429=a.fault_429, rate_500=a.fault_500, rate_timeout=a.fault_timeout,
                        rate_drop=a.fault_drop, timeout_hold_s=a.timeout_hold_s,
                        applied_probability=a.applied_probability, latency_s=a.latency_s,
                        retry_after_s=a.retry_after_s)
        return FakeStripeConfig(
            meters=tuple(a.meter) if a.meter else default_meters(), api_key=a.api_key,
            host=a.host, port=a.port, seed=a.seed, faults=faults, strict=not a.lenient,
            allow_negative_values=not a.reject_negative,
        )
    except ValueError as exc:
        p.error(str(exc))


async def serve(config: FakeStripeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeStripe(config) as fake:
        print(f"fakestripe listening on {fake.url}", flush=True)
        await stop.wait()
        print(f"fakestripe stopping: {fake.stats}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
