"""The token bucket honours its rate, with an injected clock; pair locks; backoff."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import PermanentSinkError, RetryableSinkError
from streams.sink.ratelimit import PairLocks, TokenBucket
from streams.sink.retry import retry_forever
from streams.util.backoff import Backoff


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_bucket_hands_out_rate_plus_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(100.0, 10.0, clock=t.clock, sleep=t.sleep)
    times = []
    for _ in range(1000):
        await bucket.acquire()
        times.append(t.now)
    elapsed = times[-1] - times[0]
    # 1000 calls: the first 10 from the burst, the other 990 at 100/s.
    assert elapsed == pytest.approx(9.9, rel=1e-6)
    # In any window of 1 s at most rate + burst calls.
    j = 0
    for i, start in enumerate(times):
        while times[j] < start - 1.0 + 1e-9:
            j += 1
        assert i - j + 1 <= 110


@given(rate=st.floats(min_value=1, max_value=10_000), burst=st.floats(min_value=1, max_value=50),
       n=st.integers(min_value=1, max_value=300))
async def test_bucket_never_exceeds_rate(rate: float, burst: float, n: int) -> None:
    t = FakeTime()
    bucket = TokenBucket(rate, burst, clock=t.clock, sleep=t.sleep)
    start = t.now
    for _ in range(n):
        await bucket.acquire()
    assert n <= burst + rate * (t.now - start) + 1e-6


async def test_bucket_refills_only_to_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(10.0, 5.0, clock=t.clock, sleep=t.sleep)
    t.now += 3600  # an idle hour saves no more than the burst
    taken = sum(1 for _ in range(20) if bucket.try_acquire())
    assert taken == 5


async def test_bucket_serves_concurrent_waiters_at_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(50.0, 1.0, clock=t.clock, sleep=t.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(101)))
    assert t.now - 1000.0 == pytest.approx(2.0, rel=1e-6)


def test_pair_locks_all_or_nothing() -> None:
    locks = PairLocks()
    assert locks.try_acquire([("c", "m"), ("c", "n")])
    assert not locks.try_acquire([("d", "m"), ("c", "m")])
    assert not locks.busy(("d", "m"))
    locks.release([("c", "m")])
    assert locks.try_acquire([("d", "m"), ("c", "m")])
    assert len(locks) == 3


def test_backoff_full_jitter_capped_and_honours_retry_after() -> None:
    b = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(1))
    for attempt in range(100):
        delay = b.delay_s(attempt)
        assert 0 <= delay <= min(30.0, 0.5 * 2**attempt)
    assert b.delay_s(0, retry_after_s=7.0) >= 7.0


async def test_retry_forever_retries_retryable_only() -> None:
    t = FakeTime()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 20:
            raise RetryableSinkError("429", retry_after_s=None)
        return "ok"

    retried: list[int] = []
    result = await retry_forever(flaky, Backoff(rng=random.Random(2)), sleep=t.sleep,
                                 on_retry=lambda n, e, d: retried.append(n))
    assert result == "ok" and calls == 20 and retried == list(range(19))
    assert all(s <= 30.0 for s in t.sleeps)

    async def refused() -> None:
        raise PermanentSinkError("400", status=400)

    with pytest.raises(PermanentSinkError):
        await retry_forever(refused, Backoff(), sleep=t.sleep)
