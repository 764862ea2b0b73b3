"""A refused Stripe key (401, 403) holds every summary: no dead letter, nothing finished
(so nothing committed), no new calls, a slow probe, an ERROR log and a metric; once the
key is accepted again, everything is sent.

The first test drives the dispatcher with the real v1 client against the in-process fake
Stripe, whose accepted key is revoked and restored; the second checks that a 403 (a
restricted key without the permission) is treated the same way, in a v2-sized batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from streams.config import MeterSettings
from streams.core.summaries import summary_id
from streams.errors import PermanentSinkError
from streams.fakes.stripe import FakeStripe, FakeStripeConfig, MeterConfig
from streams.sink.dispatch import Dispatcher, Work
from streams.sink.engines.stripe_meter import StripeV1Client
from streams.sink.kafka_io import Source
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent, MeterEventClient
from streams.sink.offsets import PartitionOffsets
from streams.sink.plan import Summary
from streams.sink.ratelimit import TokenBucket
from streams.util.backoff import Backoff

METERS = {m: MeterSettings(name=m, stripe_event_name=m) for m in ("cpu", "gpu")}
HOUR_MS = 3_600_000
KEY = "sk_test_meterstream_auth_0123456789abcdef"
REVOKED = "sk_test_meterstream_auth_revoked_ffffffff"
RETRY_S = 0.3
CONCURRENCY = 4


class Run:
    """A dispatcher with outcome bookkeeping."""

    def __init__(self, client: MeterEventClient, works: list[Work]) -> None:
        self.registry = CollectorRegistry()
        self.outcomes: dict[str, str] = {}
        self.dead: list[tuple[Work, str]] = []
        self.tracker = works[0].owner
        assert isinstance(self.tracker, PartitionOffsets)

        def finished(work: Work, outcome: str) -> None:
            self.outcomes[work.summary.id] = outcome
            assert isinstance(self.tracker, PartitionOffsets)
            self.tracker.finish(work.source.offset)

        async def dead_letter(work: Work, reason: str, detail: str) -> None:
            self.dead.append((work, reason))

        self.dispatcher = Dispatcher(
            client, METERS, on_finished=finished, dead_letter=dead_letter,
            metrics=SinkMetrics(self.registry), bucket=TokenBucket(10_000, 100),
            max_concurrency=CONCURRENCY, call_timeout_s=5, client_timeout_s=2,
            backoff=Backoff(base_s=0.001, cap_s=0.005), auth_retry_s=RETRY_S)
        self.works = works

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    async def until(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)


def works_for(customers: int) -> list[Work]:
    """One summary of 3 units per (customer, meter), in the hour before the last."""
    now_ms = int(time.time() * 1000)
    start = now_ms - now_ms % HOUR_MS - HOUR_MS
    tracker = PartitionOffsets()
    out = []
    for c in range(customers):
        for meter in ("cpu", "gpu"):
            customer = f"a{c}"
            s = Summary(summary_id(customer, meter, start, 0), customer, meter, start,
                        start + HOUR_MS, 0, Decimal(3), Decimal(3), event_count=1)
            tracker.track(len(out))
            out.append(Work(s, b"{}", Source("usage.summaries", 0, len(out), customer),
                            stripe_customer_id=f"cus_{customer}", owner=tracker))
    return out


async def test_revoked_key_holds_everything_then_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meters = tuple(MeterConfig(id=f"mtr_{m}", event_name=m) for m in ("cpu", "gpu"))
    async with FakeStripe(FakeStripeConfig(meters=meters, api_key=REVOKED)) as fake:
        client = StripeV1Client(api_key=KEY, api_base=fake.url, timeout_s=2)
        run = Run(client, works_for(30))
        loop = asyncio.create_task(run.dispatcher.run())
        try:
            with caplog.at_level(logging.ERROR, logger="streams.sink.auth"):
                for w in run.works:
                    run.dispatcher.submit(w)
                await run.until(lambda: run.metric("meterstream_sink_stripe_auth_failing") == 1)
                began = time.monotonic()
                await asyncio.sleep(4 * RETRY_S)
                refused = run.metric("meterstream_stripe_requests_total", {"outcome": "auth"})
                elapsed = time.monotonic() - began
                # Held: nothing finished, nothing dead-lettered, nothing committable.
                assert run.outcomes == {} and run.dead == []
                assert isinstance(run.tracker, PartitionOffsets)
                assert run.tracker.unfinished() == len(run.works)
                assert run.tracker.committable() == 0
                assert fake.ledger.accepted_count == 0
                # Only the calls already started probe, each once per RETRY_S.
                assert 1 <= refused <= CONCURRENCY * (elapsed / RETRY_S + 2)
                errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                assert errors and "refused the API key (HTTP 401)" in errors[0].getMessage()
                assert all(KEY not in r.getMessage() for r in caplog.records)

            fake.set_api_key(KEY)  # the key is valid again
            await run.until(lambda: len(run.outcomes) == len(run.works))
        finally:
            await run.dispatcher.close(1.0)
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await client.aclose()
    assert set(run.outcomes.values()) == {"sent"} and run.dead == []
    assert run.tracker.committable() == len(run.works)
    assert run.metric("meterstream_sink_stripe_auth_failing") == 0
    assert len(fake.ledger.identifiers) == len(run.works)


class ForbiddenClient:
    """A v2-sized client whose key lacks a permission until ``allowed``."""

    max_batch = 100

    def __init__(self) -> None:
        self.allowed = False
        self.calls = 0
        self.accepted: set[str] = set()

    async def send(self, events: Sequence[MeterEvent]) -> None:
        self.calls += 1
        if not self.allowed:
            raise PermanentSinkError("HTTP 403 secret_key_required: permission missing",
                                     status=403, code="secret_key_required")
        self.accepted.update(e.identifier for e in events)

    async def aclose(self) -> None:
        return None


async def test_forbidden_key_in_a_batch_is_not_split_nor_dead_lettered() -> None:
    client = ForbiddenClient()
    run = Run(client, works_for(40))
    loop = asyncio.create_task(run.dispatcher.run())
    try:
        for w in run.works:
            run.dispatcher.submit(w)
        await run.until(lambda: client.calls >= 2)
        await asyncio.sleep(2 * RETRY_S)
        # A permanent error in a batch would be retried summary by summary to find the
        # culprit; a refused key is no summary's fault, so the batch stays whole.
        assert client.calls <= CONCURRENCY * 4
        assert run.dead == [] and run.outcomes == {}
        client.allowed = True
        await run.until(lambda: len(run.outcomes) == len(run.works))
    finally:
        await run.dispatcher.close(1.0)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert set(run.outcomes.values()) == {"sent"} and run.dead == []
    assert len(client.accepted) == len(run.works)
    assert run.metric("meterstream_sink_stripe_auth_failing") == 0
