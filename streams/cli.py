"""The ``meterstream`` command.

Every subcommand loads the settings once (environment ``METERSTREAM_*`` and the TOML file
given by ``--config`` or ``METERSTREAM_CONFIG``) and fails at start, exit code 2, with a
message naming each bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.config import Settings, load_settings
from streams.errors import ConfigError
from streams.observability.logs import setup_logging

__all__ = ["main"]

log = logging.getLogger("meterstream")


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.worker import run_worker

    return run_worker(settings)


def _cmd_topics_create(settings: Settings, args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from streams.kafka.admin import create_topics

    try:
        result = asyncio.run(create_topics(settings))
    except KafkaError as exc:
        # aiokafka's messages name the broker and the error, never the credentials; its
        # log line above says why (e.g. SaslAuthenticationFailed).
        print(f"meterstream: cannot create topics on {settings.kafka.bootstrap_servers} "
              f"({settings.kafka.security_protocol}): {exc}", file=sys.stderr)
        return 1
    problems = 0
    for topic, status in result.items():
        print(f"{topic}: {status}")
        problems += status not in ("created", "exists")
    return 1 if problems else 0


def _cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sink.run import run_sink

    try:
        asyncio.run(run_sink(settings, metrics_port=args.metrics_port or None))
    except ConfigError as exc:  # what only the sink's engine checks (a token, the meters)
        print(f"meterstream: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sink.run import run_reconcile

    return asyncio.run(run_reconcile(settings, args.period))


def _cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    import json
    import urllib.request

    host = settings.worker.web_host if settings.worker.web_host != "0.0.0.0" else "127.0.0.1"
    url = args.url or f"http://{host}:{settings.worker.web_port}"
    query = f"?period={args.period}" if args.period else ""
    req = urllib.request.Request(f"{url}/customers/{args.customer}/usage{query}")  # noqa: S310
    if settings.worker.api_token is not None:
        req.add_header("Authorization", f"Bearer {settings.worker.api_token.get_secret_value()}")
    if not url.startswith(("http://", "https://")):
        print(f"meterstream: --url must be http(s), got {url!r}", file=sys.stderr)
        return 2
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http(s) checked above)
        print(json.dumps(json.load(resp), indent=2))
    return 0


def _cmd_loadgen(settings: Settings, args: argparse.Namespace) -> int:
    from streams.loadgen.cli import run_loadgen

    return run_loadgen(settings, args)


def _cmd_alerts_tail(settings: Settings, args: argparse.Namespace) -> int:
    from streams.alerts.tail import run_alerts_tail

    return run_alerts_tail(settings, args)


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.demo.run import run_demo

    return run_demo(settings, args)


def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from streams.importer.args import run_from_args

    return run_from_args(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterstream",
        description="Exact usage metering: Kafka usage events to Stripe meter events.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or METERSTREAM_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, fn: Callable[[Settings, argparse.Namespace], int],
            parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
            ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    add("worker", "Run the aggregator (Faust worker): events in; summaries, alerts, DLQ out.",
        _cmd_worker)
    topics = sub.add_parser("topics", help="Manage Kafka topics.", description="Manage topics.")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    add("create", "Create every topic with its partitions, retention and compaction "
        "(idempotent).", _cmd_topics_create, topics_sub)
    sink = add("sink", "Push meter summaries to the billing engine of SINK__ENGINE: Stripe "
               "(v1, v2 stream or dry-run) or Metronome.", _cmd_sink)
    sink.add_argument("--metrics-port", type=int, default=6067,
                      help="serve Prometheus /metrics on this port (0: off; default 6067)")
    rec = add("reconcile", "Compare our period totals with the billing engine's (Stripe or "
              "Metronome); exit 1 on any difference.",
              _cmd_reconcile)
    rec.add_argument("--period", required=True, help="billing period, YYYY-MM")
    usage = add("usage", "Show a customer's usage in the current period (query API).", _cmd_usage)
    usage.add_argument("customer")
    usage.add_argument("--period", help="YYYY-MM (default: current)")
    usage.add_argument("--url", help="worker base URL (default: from settings)")
    lg = add("loadgen", "Produce a deterministic test workload (with duplicates, late and "
             "invalid records) to the events topic.", _cmd_loadgen)
    lg.add_argument("--events", type=int, default=10_000, help="events to generate")
    lg.add_argument("--customers", type=int, default=100)
    lg.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of customer activity")
    lg.add_argument("--duplicate-rate", type=float, default=0.05)
    lg.add_argument("--late-rate", type=float, default=0.03)
    lg.add_argument("--invalid-rate", type=float, default=0.02)
    lg.add_argument("--pack", type=int, default=1, help="events per record (1: single events)")
    lg.add_argument("--rate", type=float, default=0.0,
                    help="offered rate, events per second (0: as fast as possible)")
    lg.add_argument("--span-s", type=int, default=20 * 60,
                    help="event time covered, ending 2 s before now (default 1200)")
    lg.add_argument("--seed", type=int, default=1)
    lg.add_argument("--truth", type=Path, help="write the ground truth JSON here")
    lg.add_argument("--stripe-customer-prefix", metavar="PREFIX",
                    help="first publish customer records mapping each customer to the Stripe "
                         "customer id PREFIX<customer> (e.g. cus_), so the sink bills them")

    alerts = sub.add_parser("alerts", help="Consume threshold alerts.",
                            description="Consume threshold alerts.")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    tail = add("tail", "Print alerts as they fire; optionally POST each to a webhook "
               "(at-least-once, deduplicated by alert id).", _cmd_alerts_tail, alerts_sub)
    tail.add_argument("--from-beginning", action="store_true",
                      help="read the topic from its first record (default: only new alerts)")
    tail.add_argument("--webhook", metavar="URL",
                      help="POST each alert's JSON here (Idempotency-Key: alert id)")
    tail.add_argument("--max", type=int, default=None, metavar="N",
                      help="stop after N distinct alerts")
    tail.add_argument("--group", default=None,
                      help="consumer group (default: <app_id>-alerts-tail)")

    demo = add("demo", "Run the whole pipeline locally (Kafka, worker, fake Stripe or Stripe "
               "test mode with STRIPE_API_KEY, sink) under a demo load with a live view, "
               "then reconcile; exit 0 only when nothing differs.", _cmd_demo)
    demo.add_argument("--duration", type=int, default=120,
                      help="seconds of load and drain after start-up (>= 45; default 120)")
    demo.add_argument("--events-per-s", type=float, default=200.0,
                      help="offered load, events per second (default 200)")
    demo.add_argument("--customers", type=int, default=50, help="demo customers (default 50)")
    demo.add_argument("--engine", choices=("stripe", "metronome"), default="stripe",
                      help="billing engine of the demo's sink: stripe (the fake Stripe, or "
                           "Stripe test mode with STRIPE_API_KEY) or metronome (the fake "
                           "Metronome); default stripe")
    demo.add_argument("--plain", action="store_true",
                      help="print periodic lines instead of the live view (default without "
                      "a TTY)")

    from streams.importer.args import HELP as IMPORT_HELP
    from streams.importer.args import add_import_arguments

    add_import_arguments(add("import", IMPORT_HELP, _cmd_import))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"meterstream: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.worker.log_level, settings.worker.log_format)
    fn: Callable[[Settings, argparse.Namespace], int] = args.fn
    try:
        return fn(settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
