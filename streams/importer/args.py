"""The arguments of ``meterstream import`` (argparse only: cheap to import)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.config import Settings

__all__ = ["add_import_arguments", "run_from_args"]

HELP = ("Bulk import / backfill usage events from JSON Lines, CSV or Parquet files "
        "(.gz too), local or s3://; resumable, deduplicating.")


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a file, a directory, or s3://bucket/prefix")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet", "auto"), default="auto",
                   help="file format (default: by extension: .jsonl .csv .parquet, each "
                        "optionally .gz)")
    p.add_argument("--layout", choices=("meterstream", "stripe"), default="meterstream",
                   help="meterstream: usage event v1 fields (default); stripe: the files of "
                        "Stripe's S3 connector (identifier, timestamp in Unix seconds, "
                        "event_name, payload / payload_* columns), mapped to our meters by "
                        "stripe_event_name and to our customers by stripe_customer_id")
    p.add_argument("--stripe-customer-as-id", action="store_true",
                   help="with --layout stripe: use the Stripe customer id as the customer "
                        "id instead of looking it up in the customers topic")
    p.add_argument("--stripe-value-key", default="value", metavar="KEY",
                   help="with --layout stripe: the payload key of the value (the Stripe "
                        "meter's value_settings.event_payload_key; default value)")
    p.add_argument("--map", action="append", default=[], metavar="EVENT_FIELD=COLUMN",
                   help="read an event field from another column (repeatable); fields: id "
                        "customer meter value timestamp attributes attributes.NAME")
    p.add_argument("--rejects", type=Path, metavar="PATH",
                   help="write refused rows to this JSON Lines file (default: the events "
                        "DLQ topic)")
    p.add_argument("--checkpoint", type=Path, metavar="PATH",
                   help="JSON checkpoint: skip files done, resume a file where it stopped")
    p.add_argument("--watch", action="store_true",
                   help="keep polling the source for new files until SIGINT/SIGTERM")
    p.add_argument("--interval", type=float, default=10.0, metavar="S",
                   help="seconds between polls with --watch (default 10)")
    p.add_argument("--pack", type=int, default=1000, metavar="N",
                   help="events per packed record of one customer (1: no packing; "
                        "default 1000)")
    p.add_argument("--commit-rows", type=int, default=50_000, metavar="N",
                   help="flush and checkpoint at least every N rows (and every 2 s); a "
                        "killed import re-sends at most this many rows (default 50000)")
    p.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(settings: Settings, args: argparse.Namespace) -> int:
    from streams.errors import ImportSourceError
    from streams.importer.formats import parse_mapping
    from streams.importer.run import ImportOptions, run_import

    try:
        mapping = parse_mapping(args.map)
        if not 1 <= args.pack <= 10_000:
            raise ValueError("--pack must be within 1..10000")
        if args.commit_rows < 1:
            raise ValueError("--commit-rows must be >= 1")
        if args.interval <= 0:
            raise ValueError("--interval must be > 0")
        if args.layout == "stripe" and mapping:
            raise ValueError("--map does not apply to --layout stripe (a fixed layout)")
        if args.layout == "stripe" and args.format == "parquet":
            raise ValueError("--layout stripe reads CSV, JSON or JSON Lines, not Parquet")
        if args.layout != "stripe" and (args.stripe_customer_as_id
                                        or args.stripe_value_key != "value"):
            raise ValueError("--stripe-customer-as-id and --stripe-value-key need "
                             "--layout stripe")
    except ValueError as exc:
        print(f"meterstream import: {exc}", file=sys.stderr)
        return 2
    options = ImportOptions(
        source=args.source, fmt=None if args.format == "auto" else args.format,
        mapping=mapping, rejects_path=args.rejects, checkpoint_path=args.checkpoint,
        watch=args.watch, interval_s=args.interval, pack=args.pack,
        endpoint_url=args.endpoint_url, commit_every_rows=args.commit_rows,
        progress=not args.no_progress, layout=args.layout,
        stripe_customer_as_id=args.stripe_customer_as_id,
        stripe_value_key=args.stripe_value_key)
    try:
        return run_import(settings, options)
    except ImportSourceError as exc:
        print(f"meterstream import: {exc}", file=sys.stderr)
        return 1
