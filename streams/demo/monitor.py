"""What the demo watches while it runs: the summaries and alerts topics (read from the
beginning by a group-less consumer, deduplicated by id), the sink's Prometheus metrics,
and the worker's usage API. All of it lands in a :class:`DemoState`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.alerts.tail import format_alert
from streams.config import Settings
from streams.core.money import EXACT
from streams.demo.view import DemoState
from streams.kafka.compat import partitions_of

__all__ = ["Monitor"]

_TOP_EVERY_CYCLE = 10
_OTHERS_PER_CYCLE = 5


class Monitor:
    def __init__(self, settings: Settings, state: DemoState, customers: list[str], *,
                 usage_url: str, metrics_url: str) -> None:
        self.settings = settings
        self.state = state
        self.customers = customers
        self.usage_url = usage_url
        self.metrics_url = metrics_url
        # summary id -> (customer, meter, delta)
        self.summaries: dict[str, tuple[str, str, Decimal]] = {}
        self._alert_ids: set[str] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            tasks = [asyncio.create_task(self._topics()),
                     asyncio.create_task(self._metrics(session)),
                     asyncio.create_task(self._usage(session))]
            try:
                yield
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await t

    def totals(self) -> dict[tuple[str, str], Decimal]:
        out: dict[tuple[str, str], Decimal] = {}
        for customer, meter, delta in self.summaries.values():
            out[(customer, meter)] = EXACT.add(out.get((customer, meter), Decimal(0)), delta)
        return out

    async def wait_drained(self, want: Mapping[tuple[str, str], Decimal],
                           timeout_s: float) -> bool:
        """Until the summaries add up to ``want`` exactly and the sink has finished (sent,
        skipped as zero or duplicate, or dead-lettered) as many summary records as the
        topic holds; twice in a row, 1 s apart."""
        deadline = time.monotonic() + timeout_s
        streak = 0
        while time.monotonic() < deadline:
            s = self.state
            done = (self.totals() == dict(want) and s.summary_messages > 0
                    and s.sink_finished >= s.summary_messages)
            streak = streak + 1 if done else 0
            if streak >= 2:
                return True
            await asyncio.sleep(1.0)
        return False

    async def _topics(self) -> None:
        t = self.settings.topics
        from streams.kafka.client import connection_options

        consumer = AIOKafkaConsumer(**connection_options(self.settings.kafka), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    # summaries and alerts come from the worker's
                                    # transactions: show committed ones only
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            tps: list[TopicPartition] = []
            while not tps:
                summaries = await partitions_of(consumer, t.summaries)
                alerts = await partitions_of(consumer, t.alerts)
                tps = summaries + alerts if summaries and alerts else []
                if not tps:
                    await asyncio.sleep(0.5)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.value is None:
                            continue
                        with contextlib.suppress(orjson.JSONDecodeError, KeyError, ValueError):
                            doc = orjson.loads(rec.value)
                            if tp.topic == t.summaries:
                                self._summary(doc)
                            else:
                                self._alert(doc)
        finally:
            await consumer.stop()

    def _summary(self, doc: dict[str, object]) -> None:
        self.state.summary_messages += 1
        sid = str(doc["id"])
        if sid not in self.summaries:
            self.summaries[sid] = (str(doc["customer"]), str(doc["meter"]),
                                   Decimal(str(doc["delta"])))
            self.state.summaries_seen = len(self.summaries)

    def _alert(self, doc: dict[str, object]) -> None:
        aid = str(doc["id"])
        if aid in self._alert_ids:
            return
        self._alert_ids.add(aid)
        self.state.alert_count += 1
        self.state.alerts.append(f"{self.state.elapsed_s:5.0f}s {format_alert(doc)}")

    async def _metrics(self, session: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with session.get(self.metrics_url) as resp:
                    if resp.status == 200:
                        self._parse_metrics(await resp.text())
            await asyncio.sleep(1.0)

    def _parse_metrics(self, text: str) -> None:
        calls: dict[str, float] = {}
        finished = sent = 0.0
        pending = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "meterstream_stripe_requests_total":
                    calls[sample.labels.get("outcome", "?")] = sample.value
                elif sample.name == "meterstream_sink_summaries_total":
                    finished += sample.value
                    if sample.labels.get("outcome") == "sent":
                        sent = sample.value
                elif sample.name == "meterstream_sink_pending_summaries":
                    pending = sample.value
        s = self.state
        s.stripe_calls, s.sink_finished = calls, finished
        s.sink_sent, s.sink_pending = sent, pending

    async def _usage(self, session: aiohttp.ClientSession) -> None:
        """Each second: the busiest customers (the load's Zipf ranks) and a few others."""
        others = self.customers[_TOP_EVERY_CYCLE:]
        i = 0
        while True:
            batch = self.customers[:_TOP_EVERY_CYCLE]
            if others:
                batch = batch + [others[(i + k) % len(others)] for k in range(_OTHERS_PER_CYCLE)]
                i += _OTHERS_PER_CYCLE
            await asyncio.gather(*(self._usage_of(session, c) for c in batch))
            await asyncio.sleep(1.0)

    async def _usage_of(self, session: aiohttp.ClientSession, customer: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            async with session.get(f"{self.usage_url}/customers/{customer}/usage") as resp:
                if resp.status == 200:
                    doc = await resp.json()
                    spend = Decimal(str(doc["spend_minor"]))
                    if spend > 0:
                        self.state.spend_minor[customer] = spend
