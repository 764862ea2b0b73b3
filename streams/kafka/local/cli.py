"""The ``kafka-local`` command (``deploy/kafka-local/kafka-local`` runs it)::

    python -m streams.kafka.local fetch [--version V]
    python -m streams.kafka.local start [--dir DIR] [--version V] [--heap-mb N] [--sasl-ssl]
    python -m streams.kafka.local stop [--dir DIR]
    python -m streams.kafka.local status [--dir DIR]

``start`` prints the bootstrap servers (and, with ``--sasl-ssl``, a second line for the
SASL_SSL listener) and leaves the broker running after the command exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.kafka.local.broker import KafkaLocal
from streams.kafka.local.jars import KafkaLocalError, default_home, fetch

__all__ = ["main"]

_DESCRIPTION = ("A real single-node Apache Kafka broker (KRaft, combined broker+controller), "
                "no Docker.")


def main(argv: list[str] | None = None) -> int:
    """The kafka-local command; exit status 0 on success, 1 on error, 3 for status=stopped."""
    parser = argparse.ArgumentParser(prog="kafka-local", description=_DESCRIPTION)
    parser.add_argument("--home", type=Path, default=None, help="deploy/kafka-local dir")
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="copy the broker jars from Maven Central into lib/")
    p_fetch.add_argument("--version", default=None)
    p_start = sub.add_parser("start", help="start a broker; prints the bootstrap servers")
    p_start.add_argument("--version", default=None)
    p_start.add_argument("--heap-mb", type=int, default=512)
    p_start.add_argument("--timeout", type=float, default=90.0)
    p_start.add_argument("--no-quick-jit", dest="quick_jit", action="store_false")
    p_start.add_argument("--sasl-ssl", action="store_true",
                         help="also serve a SASL_SSL (SCRAM) listener; see tls/ in the dir")
    p_stop = sub.add_parser("stop", help="stop the broker (SIGTERM, then SIGKILL)")
    p_stop.add_argument("--timeout", type=float, default=30.0)
    p_status = sub.add_parser("status", help="print running/stopped and the bootstrap servers")
    for p in (p_start, p_stop, p_status):
        p.add_argument(
            "--dir", type=Path, default=None, help="data dir (default: deploy/kafka-local/run)"
        )
    args = parser.parse_args(argv)
    home: Path = args.home or default_home()

    try:
        if args.command == "fetch":
            print(fetch(args.version, home=home))
            return 0
        data_dir: Path = args.dir or home / "run"
        if args.command == "start":
            data_dir.mkdir(parents=True, exist_ok=True)
            broker = KafkaLocal(
                data_dir,
                version=args.version,
                heap_mb=args.heap_mb,
                quick_jit=args.quick_jit,
                home=home,
                sasl_ssl=args.sasl_ssl,
            )
            print(broker.start(args.timeout, detach=True))
            if broker.sasl_ssl:
                print(f"SASL_SSL {broker.sasl_bootstrap_servers} ca={broker.ca_file} "
                      f"user={broker.sasl_username} (password in {broker.tls_dir}/secrets.json)")
            return 0
        broker = KafkaLocal(data_dir, home=home)
        if args.command == "stop":
            broker.stop(args.timeout)
            return 0
        pid = broker.pid
        if pid is None:
            print("stopped")
            return 3
        print(
            f"running {broker.bootstrap_servers} pid={pid} version={broker.version} "
            f"log={broker.log_file}"
        )
        return 0
    except KafkaLocalError as exc:
        print(f"kafka-local: {exc}", file=sys.stderr)
        return 1

