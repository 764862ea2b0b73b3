"""The README's settings table, generated from the settings model (streams.config).

Every field of :class:`streams.config.Settings` gets one row: its environment variable,
its default and what is allowed (bounds, choices and patterns read from the model), plus
the meaning from :data:`MEANINGS`. A field without a meaning still gets its row, marked
"(not described yet)", so a new setting can never be left out of the README.

Regenerate the README's table (between the ``settings-table`` markers) with::

    python -m streams.config.table --write README.md

``--check README.md`` exits 1 when the README's table differs (tests/unit/test_docs.py
does the same).
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from streams.config import ENV_PREFIX, Settings

__all__ = ["BEGIN", "END", "MEANINGS", "markdown_table", "replace_table"]

BEGIN = "<!-- settings-table:begin (python -m streams.config.table --write README.md) -->"
END = "<!-- settings-table:end -->"

# What each setting means, by environment variable name without the prefix. Limits and
# choices come from the model itself; say here what the model cannot.
MEANINGS: dict[str, str] = {
    "KAFKA__BOOTSTRAP_SERVERS": "comma-separated brokers",
    "KAFKA__CLIENT_ID": "Kafka client id prefix",
    "KAFKA__SECURITY_PROTOCOL": "how to reach the brokers",
    "KAFKA__SASL_MECHANISM": "required with the SASL protocols",
    "KAFKA__SASL_USERNAME": "required with the SASL protocols",
    "KAFKA__SASL_PASSWORD": "secret; required with the SASL protocols",
    "KAFKA__SSL_CAFILE": "CA bundle (PEM) for TLS",
    "KAFKA__SSL_CERTFILE": "client certificate (PEM) for mutual TLS",
    "KAFKA__SSL_KEYFILE": "client key (PEM) for mutual TLS",
    "KAFKA__SSL_PASSWORD": "secret; the client key's password",
    "TOPICS__EVENTS": "usage events in",
    "TOPICS__EVENTS_DLQ": "refused events, with the reason",
    "TOPICS__SUMMARIES": "window totals and corrections, read by the sink",
    "TOPICS__SUMMARIES_DLQ": "summaries the sink could never send",
    "TOPICS__ALERTS": "spend threshold alerts",
    "TOPICS__CUSTOMERS": "customer records (compacted)",
    "TOPICS__PARTITIONS": "partitions of every topic `topics create` makes",
    "TOPICS__REPLICATION_FACTOR": "replicas of every topic `topics create` makes",
    "TOPICS__EVENTS_RETENTION_MS": "retention of the events topic: a billing period plus "
                                   "Stripe's 35 days, to replay",
    "TOPICS__OUTPUTS_RETENTION_MS": "retention of the summaries, alerts and DLQ topics",
    "METERS": "JSON list of `{name, stripe_event_name, aggregation: sum\\|count\\|max, "
              "unit_price_minor: \"0.08\", stripe_window: none\\|hour\\|day}`; 4 meters "
              "by default (below)",
    "AGGREGATOR__WINDOW_S": "tumbling window, UTC-aligned; must divide a day",
    "AGGREGATOR__GRACE_S": "watermark = newest event time - grace",
    "AGGREGATOR__DEDUP_HORIZON_S": "(customer, event id) dedup horizon: a resend later "
                                   "than this is counted again; state grows with it",
    "AGGREGATOR__IDLE_CLOSE_AFTER_S": "an idle partition's watermark follows the wall "
                                      "clock, this far behind",
    "AGGREGATOR__MAX_FUTURE_S": "events further ahead of their record's time are "
                                "`in_future`",
    "AGGREGATOR__MAX_AGE_S": "an upper bound for `too_old`: the worker uses the lower of it "
                             "and what `SINK__ENGINE` can bill (the engine's horizon less "
                             "15 min, the window and the grace period)",
    "SINK__ENGINE": "the billing engine of a sink process; the worker reads it too, for its "
                    "`too_old` bound (give it `metronome` when it feeds both engines)",
    "METRONOME__API_TOKEN": "secret; Metronome bearer token, required by a Metronome sink "
                            "unless `METRONOME__API_BASE` names a fake",
    "METRONOME__API_BASE": "Metronome's API host (unset: Metronome's), for the fake Metronome",
    "METRONOME__EVENT_TYPES": "JSON object meter -> Metronome `event_type` (default: the "
                              "meter's name)",
    "METRONOME__VALUE_PROPERTY": "the usage event property that carries the value",
    "METRONOME__BILLABLE_METRIC_IDS": "JSON object meter -> billable metric id, for "
                                      "reconcile (default: the metric named like the event "
                                      "type)",
    "METRONOME__RATE_LIMIT_PER_S": "requests per second (token bucket)",
    "METRONOME__MAX_CONCURRENCY": "calls in flight, besides one per (customer, meter)",
    "METRONOME__MAX_RETRIES": "failed attempts of a call before its log lines turn ERROR (it "
                              "keeps retrying)",
    "METRONOME__TIMEOUT_S": "per Metronome request",
    "METRONOME__BATCH_SIZE": "usage events per ingest request (Metronome takes 1 to 100)",
    "METRONOME__AUTH_RETRY_S": "while Metronome refuses the token, how often a call tries "
                               "again",
    "AGGREGATOR__BILLING_PERIOD": "calendar month, UTC",
    "AGGREGATOR__CURRENCY": "ISO code, lower case",
    "AGGREGATOR__THRESHOLDS_MINOR": "default spend thresholds, minor units per billing "
                                    "period",
    "AGGREGATOR__BATCH_MAX_EVENTS": "most records a round takes from the stream",
    "AGGREGATOR__BATCH_MAX_BYTES": "most record bytes a round processes at once (what "
                                   "bounds its memory); a larger fetch is processed in "
                                   "parts",
    "AGGREGATOR__BATCH_MAX_MS": "longest wait to fill a batch",
    "AGGREGATOR__BATCH_MAX_CLOSES": "most window records a partition's batch of events "
                                    "closes (emits finals for); the rest of a window "
                                    "start's close in the batches that follow; a partition "
                                    "with no records waiting closes 8 times as many in a "
                                    "batch of its own",
    "STRIPE__MODE": "`v1`, `v2` (meter event stream) or `dry-run` (writes the requests to "
                    "`STRIPE__DRY_RUN_PATH`); changes only when set",
    "STRIPE__API_KEY": "secret; `sk_test_…`, `sk_live_…`, `rk_…`; v1 and v2 only",
    "STRIPE__API_BASE": "Stripe's API host, for the fake Stripe or stripe-mock; v1 and v2 "
                        "only",
    "STRIPE__METER_EVENTS_BASE": "the v2 stream's host (default: `API_BASE`, else "
                                 "Stripe's); v2 only",
    "STRIPE__DRY_RUN_PATH": "where dry-run writes the requests; dry-run only",
    "STRIPE__RATE_LIMIT_PER_S": "token bucket; unset: 25 with a test key (Stripe's sandbox "
                                "limit), 1000 with a live key",
    "STRIPE__MAX_CONCURRENCY": "calls in flight, besides one per (customer, meter)",
    "STRIPE__MAX_RETRIES": "failed attempts of a call before its log lines turn ERROR "
                           "(it keeps retrying)",
    "STRIPE__TIMEOUT_S": "per Stripe request",
    "STRIPE__BATCH_SIZE": "events per v2 stream request; v2 only",
    "STRIPE__AUTH_RETRY_S": "while Stripe refuses the key, how often a call tries again",
    "WORKER__APP_ID": "consumer group, transactional ids and topic prefixes derive from it",
    "WORKER__STATE_DIR": "local RocksDB: committed state only, with the changelog offset it "
    "reflects; kept across restarts (kill -9 too), so only the changelog's tail is restored",
    "WORKER__WEB_HOST": "HTTP API and `/metrics`",
    "WORKER__WEB_PORT": "HTTP API and `/metrics` (0 is refused: Faust cannot pick a port)",
    "WORKER__API_TOKEN": "secret; bearer token for the HTTP API",
    "WORKER__INSTANCE_ID": "static group member id (Kafka's `group.instance.id`): stable "
    "per worker, unique among running workers; unset: the host name and the web port",
    "WORKER__ADVERTISED_URL": "where other workers forward usage queries; unset: "
    "`http://{web_host}:{web_port}`, with the host name for a wildcard bind address",
    "WORKER__COMPRESSION": "compression of what the worker writes (changelog, summaries, "
    "alerts, dead letters); lz4 costs the worker 12-19% of its CPU",
    "WORKER__ROCKSDB_MEMORY_MB": "one bound on RocksDB memory for the process: a block cache "
    "shared by every partition, write buffers charged to it",
    "WORKER__SESSION_TIMEOUT_S": "a worker silent this long loses its partitions; restarted "
    "within it (same instance id), it keeps them without a rebalance",
    "WORKER__CAUGHT_UP_MAX_LAG": "lag (records, all owned partitions) within which `/ready` "
    "says `caught_up` and `meterstream_caught_up` is 1",
    "WORKER__LOG_FORMAT": "`json` for JSON lines",
    "WORKER__LOG_LEVEL": "",
}


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        if value and isinstance(value[0], BaseModel):
            return f"{len(value)} items"
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, Decimal) else str(v)
                                for v in value) + "]`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{value}`"


def _allowed(info: FieldInfo) -> str:
    parts: list[str] = []
    annotation = info.annotation
    choices = [a for a in typing.get_args(annotation) if a is not type(None)]
    literal = next((c for c in [annotation, *choices] if typing.get_origin(c) is
                    typing.Literal), None)
    if literal is not None:
        parts.append(" \\| ".join(f"`{c}`" for c in typing.get_args(literal)))
    for meta in info.metadata:
        for attr, word in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{word} {bound}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`".replace("|", "\\|"))
    return ", ".join(parts)


def _rows() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            defaults = info.get_default(call_default_factory=True)
            for name, field in model.model_fields.items():
                env = f"{section}__{name}".upper()
                meaning = MEANINGS.get(env, "(not described yet)")
                allowed = _allowed(field)
                text = "; ".join(p for p in (meaning, allowed and f"allowed: {allowed}") if p)
                rows.append((env, _default(getattr(defaults, name)), text))
        else:
            env = section.upper()
            rows.append((env, _default(info.get_default(call_default_factory=True)),
                         MEANINGS.get(env, "(not described yet)")))
    return rows


def markdown_table() -> str:
    """The settings table, one row per field of the settings model."""
    lines = ["| setting (env var, prefix `" + ENV_PREFIX + "`) | default | meaning |",
             "|---|---|---|"]
    lines += [f"| `{env}` | {default} | {text} |" for env, default, text in _rows()]
    return "\n".join(lines)


def replace_table(document: str) -> str:
    """``document`` with the text between :data:`BEGIN` and :data:`END` regenerated."""
    pattern = re.compile(re.escape(BEGIN) + r"\n(?:.*?\n)?" + re.escape(END), re.S)
    if not pattern.search(document):
        raise ValueError(f"no settings table markers ({BEGIN} ... {END}) in the document")
    return pattern.sub(lambda _m: f"{BEGIN}\n{markdown_table()}\n{END}", document, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.config.table",
                                     description="Print, check or write the README's "
                                                 "settings table, generated from the model.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="FILE",
                       help="replace the table between the markers in FILE")
    group.add_argument("--check", type=Path, metavar="FILE",
                       help="exit 1 if FILE's table differs from the generated one")
    args = parser.parse_args(argv)
    if args.write:
        text = args.write.read_text()
        args.write.write_text(replace_table(text))
        return 0
    if args.check:
        text = args.check.read_text()
        if replace_table(text) != text:
            print(f"{args.check}: the settings table is out of date; run "
                  f"python -m streams.config.table --write {args.check}", file=sys.stderr)
            return 1
        return 0
    print(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
