"""``meterstream alerts tail``: an example consumer of usage.alerts (alert v1).

It prints one line per alert and, with ``--webhook URL``, POSTs each alert's JSON to the
URL. Delivery is at-least-once:

1. read a record; skip it when its alert id was seen already (a replay of the worker can
   emit an id again, with the same content);
2. POST it with the header ``Idempotency-Key: <alert id>``, retrying connection errors,
   timeouts, 408, 429 and 5xx with exponential backoff and full jitter, without limit:
   an alert is never skipped because the receiver is down;
3. only after a 2xx, commit the record's offset. A crash between 2 and 3 re-sends the
   alert after the restart, with the same Idempotency-Key, so the receiver dedups.

Any other 4xx means the receiver will never take this alert: it is logged and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.config import Settings
from streams.core.money import EXACT, format_decimal
from streams.errors import WebhookRejectedError
from streams.util.backoff import Backoff

__all__ = ["format_alert", "post_alert",
           "run_alerts_tail", "tail_alerts"]

log = logging.getLogger(__name__)

_SEEN_MAX = 1_000_000


def _dollars(minor: object) -> str:
    try:
        return format_decimal(EXACT.divide(Decimal(str(minor)), Decimal(100)))
    except (InvalidOperation, ArithmeticError):
        return "?"


def format_alert(alert: dict[str, Any]) -> str:
    """One line: customer, period, threshold and spend (in major units of the currency)."""
    threshold = alert.get("threshold") or {}
    kind = threshold.get("kind", "?")
    what = (f"{threshold.get('percent')}% of budget" if kind == "budget_percent"
            else f"{_dollars(threshold.get('amount_minor'))}")
    currency = str(alert.get("currency", "")).upper()
    return (f"ALERT {alert.get('customer')} period {alert.get('period')} crossed {what} "
            f"{currency} (threshold {threshold.get('id')}): spend "
            f"{_dollars(alert.get('spend_minor'))} {currency} [{alert.get('id')}]")


async def post_alert(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    alert_id: str,
    *,
    backoff: Backoff,
) -> int:
    """POST until a 2xx; return the attempts it took. Raises WebhookRejectedError on a
    permanent 4xx."""
    attempt = 0
    while True:
        attempt += 1
        try:
            async with session.post(url, data=body, headers={
                "Content-Type": "application/json", "Idempotency-Key": alert_id,
            }) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, why = 0, type(exc).__name__
        else:
            if 200 <= status < 300:
                return attempt
            why = f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                raise WebhookRejectedError(f"webhook refused alert {alert_id}: {why}")
        delay = backoff.delay_s(attempt - 1)
        log.warning("webhook delivery of alert %s failed (%s), attempt %d; retrying in %.2fs",
                    alert_id, why, attempt, delay)
        await asyncio.sleep(delay)


class _FromBeginning(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seek each partition to its beginning the first time it is assigned."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.done: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if tp not in self.done]
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
            self.done.update(fresh)


async def tail_alerts(
    settings: Settings,
    *,
    from_beginning: bool = False,
    webhook: str | None = None,
    max_alerts: int | None = None,
    group_id: str | None = None,
    backoff: Backoff | None = None,
    out: Callable[[str], None] = print,
    seed: int | None = None,
) -> int:
    """Consume alerts until ``max_alerts`` distinct alerts were handled (None: forever).

    Returns the number of distinct alerts handled. Offsets are committed per record,
    after the record was handled (printed, and accepted by the webhook when one is set).
    """
    from streams.kafka.client import connection_options

    consumer = AIOKafkaConsumer(
        **connection_options(settings.kafka),
        client_id=f"{settings.kafka.client_id}-alerts-tail",
        group_id=group_id or f"{settings.worker.app_id}-alerts-tail",
        enable_auto_commit=False,
        # Alerts are written in the worker's transactions: only committed ones count.
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    backoff = backoff or Backoff()
    if seed is not None:
        backoff = replace(backoff, rng=random.Random(seed))
    seen: OrderedDict[str, None] = OrderedDict()
    handled = 0
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) if webhook else None
    await consumer.start()
    try:
        listener = _FromBeginning(consumer) if from_beginning else None
        if listener is not None:
            consumer.subscribe([settings.topics.alerts], listener=listener)
        else:
            consumer.subscribe([settings.topics.alerts])
        while max_alerts is None or handled < max_alerts:
            batch = await consumer.getmany(timeout_ms=1_000, max_records=100)
            for tp, records in batch.items():
                for rec in records:
                    handled += await _handle(rec.value, seen, session, webhook, backoff,
                                             out)
                    await consumer.commit({tp: OffsetAndMetadata(rec.offset + 1, "")})
                    if max_alerts is not None and handled >= max_alerts:
                        return handled
    finally:
        await consumer.stop()
        if session is not None:
            await session.close()
    return handled


async def _handle(
    value: bytes | None,
    seen: OrderedDict[str, None],
    session: aiohttp.ClientSession | None,
    webhook: str | None,
    backoff: Backoff,
    out: Callable[[str], None],
) -> int:
    """Handle one record; 1 when it was a new alert, else 0."""
    try:
        alert = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        log.warning("skipping an alerts record that is not JSON")
        return 0
    if not isinstance(alert, dict) or alert.get("schema") != "alert.v1" or not alert.get("id"):
        log.warning("skipping an alerts record that is not alert.v1")
        return 0
    alert_id = str(alert["id"])
    if alert_id in seen:
        return 0
    if session is not None and webhook is not None:
        try:
            attempts = await post_alert(session, webhook, value or b"", alert_id,
                                        backoff=backoff)
        except WebhookRejectedError as exc:
            log.error("%s; skipping it", exc)
        else:
            if attempts > 1:
                log.info("alert %s delivered after %d attempts", alert_id, attempts)
    out(format_alert(alert))
    seen[alert_id] = None
    if len(seen) > _SEEN_MAX:
        seen.popitem(last=False)
    return 1


def run_alerts_tail(settings: Settings, args: argparse.Namespace) -> int:
    if args.webhook is not None and not args.webhook.startswith(("http://", "https://")):
        print(f"meterstream: --webhook must be an http(s) URL, got {args.webhook!r}")
        return 2
    if args.max is not None and args.max < 1:
        print("meterstream: --max must be >= 1")
        return 2

    def out(line: str) -> None:
        print(line, flush=True)

    asyncio.run(tail_alerts(settings, from_beginning=args.from_beginning, webhook=args.webhook,
                            max_alerts=args.max, group_id=args.group, out=out))
    return 0
