"""``meterstream alerts tail`` against a real broker and a local webhook that fails.

The webhook answers 500 to its first two requests. The tail must retry the first alert
with backoff (same Idempotency-Key each time), deliver every distinct alert exactly once
to the application (a replayed alert id is skipped), print one line per alert, and commit
offsets only after the webhook accepted: a second tail in the same group finds nothing
left to deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.alerts.tail import tail_alerts
from streams.testing.pipeline import PipelineEnv
from streams.util.backoff import Backoff


def _alert(n: int, customer: str) -> dict[str, Any]:
    return {"schema": "alert.v1", "id": f"al1_{n:040d}", "customer": customer,
            "period": "2026-11",
            "threshold": {"id": "abs:10000", "kind": "absolute", "amount_minor": "10000",
                          "percent": None},
            "currency": "usd", "spend_minor": f"{10000 + n}.5",
            "crossed_at_event_ms": 1795000123000 + n, "event_id": f"ev-{n}",
            "emitted_at_ms": 1795000123456 + n}


class Webhook:
    """Fails the first ``fail_first`` requests with 500, then accepts (204)."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[str] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append((key, body))
        if len(self.requests) <= self.fail_first:
            return web.json_response({"error": "try again"}, status=500)
        self.accepted.append(key)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/hook", self.handle)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_tail_retries_dedups_and_commits_after_accept(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # One partition: the order a1, a2, a1 (duplicate), a3 is then the order of reading,
    # so the tail meets the duplicate before its third distinct alert and commits all 4.
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=1)
    await env.create_topics()
    settings = env.settings()
    topic = settings.topics.alerts
    a1, a2, a3 = _alert(1, "c-1"), _alert(2, "c-1"), _alert(3, "c-2")
    # a1 again after a2: what a worker replay looks like.
    records = [(b"c-1", orjson.dumps(a1)), (b"c-1", orjson.dumps(a2)),
               (b"c-1", orjson.dumps(a1)), (b"c-2", orjson.dumps(a3))]
    assert await env.produce(records, topic=topic) == 4

    hook = Webhook(fail_first=2)
    await hook.start()
    lines: list[str] = []
    group = f"{env.prefix}-tail"
    try:
        handled = await asyncio.wait_for(tail_alerts(
            settings, from_beginning=True, webhook=hook.url, max_alerts=3, group_id=group,
            backoff=Backoff(base_s=0.05, cap_s=0.2), out=lines.append, seed=1,
        ), timeout=60)
        assert handled == 3
        # Every distinct alert accepted exactly once; the first one took three tries,
        # all with its own id as the Idempotency-Key.
        assert sorted(hook.accepted) == sorted(a["id"] for a in (a1, a2, a3))
        first_key = hook.requests[0][0]
        assert [k for k, _ in hook.requests[:3]] == [first_key] * 3
        assert len(hook.requests) == 5
        for key, body in hook.requests:
            assert body["id"] == key
        assert len(lines) == 3 and all(line.startswith("ALERT ") for line in lines)
        assert any("c-2" in line and "100.035 USD" in line for line in lines), lines
        # Offsets: all four records are committed (the duplicate too, after the skip).
        assert await _committed(kafka_bootstrap, group, topic, 1) == 4

        # A second tail in the same group has nothing left: no request, no line.
        again: list[str] = []
        before = len(hook.requests)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tail_alerts(
                settings, from_beginning=False, webhook=hook.url, max_alerts=1,
                group_id=group, out=again.append), timeout=8)
        assert again == [] and len(hook.requests) == before
    finally:
        await hook.stop()


async def test_tail_redelivers_when_the_webhook_never_accepted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Stopped while the webhook still fails: nothing is committed, and the next tail in
    the group delivers the alert."""
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=1)
    await env.create_topics()
    settings = env.settings()
    alert = _alert(7, "c-7")
    await env.produce([(b"c-7", orjson.dumps(alert))], topic=settings.topics.alerts)
    group = f"{env.prefix}-tail"
    down = Webhook(fail_first=10_000)
    await down.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tail_alerts(
                settings, from_beginning=True, webhook=down.url, max_alerts=1,
                group_id=group, backoff=Backoff(base_s=0.05, cap_s=0.1)), timeout=6)
        assert len(down.requests) >= 2 and down.accepted == []
        assert await _committed(kafka_bootstrap, group, settings.topics.alerts, 1) == 0
    finally:
        await down.stop()
    up = Webhook(fail_first=0)
    await up.start()
    lines: list[str] = []
    try:
        assert await asyncio.wait_for(tail_alerts(
            settings, from_beginning=True, webhook=up.url, max_alerts=1, group_id=group,
            out=lines.append), timeout=60) == 1
        assert up.accepted == [alert["id"]] and len(lines) == 1
        assert await _committed(kafka_bootstrap, group, settings.topics.alerts, 1) == 1
    finally:
        await up.stop()
