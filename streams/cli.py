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
from streams.logs import setup_logging

__all__ = ["main"]

log = logging.getLogger("meterstream")


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.worker import run_worker

    return run_worker(settings)


def _cmd_topics_create(settings: Settings, args: argparse.Namespace) -> int:
    from streams.adapters.kafka_admin import create_topics

    result = asyncio.run(create_topics(settings))
    problems = 0
    for topic, status in result.items():
        print(f"{topic}: {status}")
        problems += status not in ("created", "exists")
    return 1 if problems else 0


def _cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sink.run import run_sink

    asyncio.run(run_sink(settings, metrics_port=args.metrics_port or None))
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
    sink = add("sink", "Push meter summaries to Stripe (v1, v2 stream or dry-run).", _cmd_sink)
    sink.add_argument("--metrics-port", type=int, default=6067,
                      help="serve Prometheus /metrics on this port (0: off; default 6067)")
    rec = add("reconcile", "Compare our period totals with Stripe's; exit 1 on any difference.",
              _cmd_reconcile)
    rec.add_argument("--period", required=True, help="billing period, YYYY-MM")
    usage = add("usage", "Show a customer's usage in the current period (query API).", _cmd_usage)
    usage.add_argument("customer")
    usage.add_argument("--period", help="YYYY-MM (default: current)")
    usage.add_argument("--url", help="worker base URL (default: from settings)")
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
