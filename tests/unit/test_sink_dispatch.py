"""The dispatcher against a tiny in-test client: order, one call per pair, batching,
retries, dead letters, and the commit rule."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from streams.config import MeterSettings
from streams.core.summaries import summary_id
from streams.errors import PermanentSinkError, RetryableSinkError
from streams.sink.dispatch import Dispatcher, Work
from streams.sink.kafka_io import Source
from streams.sink.metrics import SinkMetrics
from streams.sink.model import MeterEvent
from streams.sink.offsets import PartitionOffsets
from streams.sink.plan import Summary
from streams.sink.ratelimit import TokenBucket
from streams.util.backoff import Backoff

HOUR_MS = 3_600_000
NOW_MS = 1_795_000_000_000
METERS = {
    "cpu": MeterSettings(name="cpu", stripe_event_name="cpu"),
    "gpu": MeterSettings(name="gpu", stripe_event_name="gpu", stripe_window="hour"),
}


class FakeClient:
    """Accepts events, fails some calls, and checks the one-call-per-pair rule."""

    def __init__(self, max_batch: int, *, fail_every: int = 0, refuse: set[str] | None = None,
                 seed: int = 0) -> None:
        self.max_batch = max_batch
        self.fail_every = fail_every
        self.refuse = refuse or set()
        self.calls = 0
        self.accepted: dict[str, MeterEvent] = {}
        self.order: list[str] = []
        self.in_flight: set[tuple[str, str]] = set()
        self.max_pair_concurrency = 1
        self.max_concurrency = 0
        self._now = 0
        self._rng = random.Random(seed)

    async def send(self, events: Sequence[MeterEvent]) -> None:
        assert 1 <= len(events) <= self.max_batch
        pairs = {(e.customer, e.meter) for e in events}
        if pairs & self.in_flight:
            self.max_pair_concurrency = 2
        self.in_flight |= pairs
        self._now += 1
        self.max_concurrency = max(self.max_concurrency, self._now)
        try:
            await asyncio.sleep(self._rng.random() * 0.002)
            self.calls += 1
            if self.fail_every and self.calls % self.fail_every == 0:
                raise RetryableSinkError("HTTP 429 rate_limit")
            if any(e.identifier in self.refuse for e in events):
                raise PermanentSinkError("HTTP 400 invalid: customer not found", status=400)
            for e in events:
                if e.identifier not in self.accepted:
                    self.accepted[e.identifier] = e
                    self.order.append(e.identifier)
        finally:
            self.in_flight -= pairs
            self._now -= 1

    async def aclose(self) -> None:
        return None


def make_work(customer: str, meter: str, window: int, seq: int, delta: str, total: str,
              offset: int, tracker: PartitionOffsets) -> Work:
    start = NOW_MS - NOW_MS % HOUR_MS - (10 - window) * HOUR_MS
    s = Summary(summary_id(customer, meter, start, seq), customer, meter, start,
                start + HOUR_MS, seq, Decimal(total), Decimal(delta), event_count=1000)
    tracker.track(offset)
    return Work(s, b"{}", Source("usage.summaries", 0, offset, customer),
                stripe_customer_id=f"cus_{customer}", owner=tracker)


async def run_dispatch(client: FakeClient, works: list[Work], concurrency: int = 4
                       ) -> tuple[dict[str, str], list[tuple[Work, str]], PartitionOffsets]:
    outcomes: dict[str, str] = {}
    dead: list[tuple[Work, str]] = []
    tracker = works[0].owner
    assert isinstance(tracker, PartitionOffsets)

    def finished(work: Work, outcome: str) -> None:
        assert work.summary.id not in outcomes or outcome == "duplicate"
        outcomes.setdefault(work.summary.id, outcome)
        tracker.finish(work.source.offset)

    async def dead_letter(work: Work, reason: str, detail: str) -> None:
        dead.append((work, reason))

    d = Dispatcher(client, METERS, on_finished=finished, dead_letter=dead_letter,
                   metrics=SinkMetrics(CollectorRegistry()), bucket=TokenBucket(100_000, 1000),
                   max_concurrency=concurrency, call_timeout_s=5,
                   backoff=Backoff(base_s=0.001, cap_s=0.005), clock_ms=lambda: NOW_MS)
    loop = asyncio.create_task(d.run())
    for w in works:
        d.submit(w)
    for _ in range(2000):
        if tracker.unfinished() == 0:
            break
        await asyncio.sleep(0.01)
    await d.close(1.0)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    return outcomes, dead, tracker


def workload(tracker: PartitionOffsets) -> list[Work]:
    works = []
    offset = 0
    for c in range(20):
        for window in range(3):
            for seq, (delta, total) in enumerate((("5", "5"), ("2", "7"), ("0", "7"))):
                for meter in ("cpu", "gpu"):
                    works.append(make_work(f"c{c}", meter, window, seq, delta, total, offset,
                                           tracker))
                    offset += 1
    return works


@pytest.mark.parametrize("max_batch", [1, 100])
async def test_everything_sent_once_in_order_one_call_per_pair(max_batch: int) -> None:
    tracker = PartitionOffsets()
    works = workload(tracker)
    # A duplicate of the first summary, read later.
    dup = make_work("c0", "cpu", 0, 0, "5", "5", len(works), tracker)
    client = FakeClient(max_batch, fail_every=3)
    outcomes, dead, tracker = await run_dispatch(client, [*works, dup])
    assert not dead
    assert tracker.committable() == len(works) + 1
    assert client.max_pair_concurrency == 1
    # Delta meter: sum of deltas; pre-aggregated: the last total of each window wins.
    for c in range(20):
        cpu = [e for e in client.accepted.values() if e.customer == f"c{c}" and e.meter == "cpu"]
        assert sum(e.value for e in cpu) == Decimal(21)
        gpu = [i for i in client.order if client.accepted[i].customer == f"c{c}"
               and client.accepted[i].meter == "gpu"]
        # Per window, the seq 1 total (7) arrived after the seq 0 total (5).
        for window in range(3):
            start = NOW_MS - NOW_MS % HOUR_MS - (10 - window) * HOUR_MS
            ids = [i for i in gpu if client.accepted[i].timestamp_s == start // 1000]
            assert [client.accepted[i].value for i in ids] == [Decimal(5), Decimal(7)]
    assert sorted(set(outcomes.values())) == ["sent", "zero"]
    if max_batch > 1:
        assert client.calls < len(works) / 2


async def test_permanent_refusal_in_a_batch_dead_letters_only_the_culprit() -> None:
    tracker = PartitionOffsets()
    works = workload(tracker)
    bad = works[2].summary.id  # c0 cpu, window 0, seq 1
    client = FakeClient(100, refuse={bad})
    outcomes, dead, tracker = await run_dispatch(client, works)
    assert [(w.summary.id, reason) for w, reason in dead] == [(bad, "stripe_rejected")]
    assert outcomes[bad] == "dead_lettered"
    assert tracker.committable() == len(works)
    assert bad not in client.accepted
    assert sum(1 for o in outcomes.values() if o == "sent") == len(client.accepted)


async def test_split_summary_in_v1_sends_parts_in_sequence() -> None:
    tracker = PartitionOffsets()
    work = make_work("c1", "cpu", 0, 0, "123456789.123456789", "123456789.123456789", 0, tracker)
    client = FakeClient(1)
    outcomes, dead, _ = await run_dispatch(client, [work])
    assert outcomes == {work.summary.id: "sent"} and not dead
    assert sum(e.value for e in client.accepted.values()) == Decimal("123456789.123456789")
    assert len(client.accepted) == 2


async def test_plan_errors_go_to_dead_letter() -> None:
    tracker = PartitionOffsets()
    neg = make_work("c1", "cpu", 0, 0, "-1", "5", 0, tracker)
    digits = make_work("c1", "gpu", 0, 0, "1", "1234567890.1234567", 1, tracker)
    _outcomes, dead, tracker = await run_dispatch(FakeClient(100), [neg, digits])
    assert sorted(r for _, r in dead) == ["negative_value", "too_many_digits"]
    assert tracker.committable() == 2


def test_offsets_commit_only_to_lowest_unfinished() -> None:
    t = PartitionOffsets()
    for o in (10, 11, 13, 14):  # 12 is a transaction marker: never read
        t.track(o)
    assert t.committable() == 10
    t.finish(11)
    t.finish(14)
    assert t.committable() == 10 and t.unfinished() == 2
    t.finish(10)
    assert t.committable() == 13
    t.finish(13)
    assert t.committable() == 15 and t.to_commit() == 15
    t.mark_committed(15)
    assert t.to_commit() is None
