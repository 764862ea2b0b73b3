"""How fast and how wide the sink may call Stripe.

Three independent limits, each small enough to test alone:

* :class:`TokenBucket`: calls per second, with a burst allowance. Stripe's limits are per
  request (v1: 1000 calls/s live, 25/s in a sandbox; v2 stream: per request as well), so
  one request costs one token whatever number of events it carries.
* :class:`PairLocks`: at most one call in flight per (customer, meter), Stripe's
  concurrency limiter for meter events. A call takes the locks of every pair it carries,
  all or nothing, so two calls never share a pair.
* an ``asyncio.Semaphore`` of ``StripeSettings.max_concurrency`` for calls in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable

__all__ = ["Clock", "PairLocks", "Sleep", "TokenBucket"]

Clock = Callable[[], float]
"""Monotonic seconds."""
Sleep = Callable[[float], Awaitable[None]]
_EPSILON = 1e-9


class TokenBucket:
    """An asyncio token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved.

    Invariant: over any interval of length t, at most ``burst + rate_per_s * t`` tokens are
    handed out. Waiters are served first come, first served (an ``asyncio.Lock`` queues
    them), so a steady stream of callers can't starve one.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self.rate_per_s = rate_per_s
        # Default burst: 50 ms worth of calls, at least one.
        self.burst = burst if burst is not None else max(1.0, rate_per_s / 20)
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated = now

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` now if available (and nobody is queued); never waits."""
        if self._lock.locked():
            return False
        self._refill()
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` are available, then take them."""
        if tokens > self.burst:
            raise ValueError("cannot take more tokens than the burst at once")
        async with self._lock:
            while True:
                self._refill()
                # The tolerance absorbs float rounding: after sleeping exactly the deficit
                # the bucket may hold 0.9999999999 tokens, and the clock may not be able
                # to advance by the remaining 1e-12 s at all.
                if self._tokens >= tokens - _EPSILON:
                    self._tokens -= tokens
                    return
                await self._sleep((tokens - self._tokens) / self.rate_per_s)


class PairLocks:
    """Which (customer, meter) pairs have a call in flight. Not a waiting lock: the
    dispatcher only builds calls from free pairs, and frees them when the call is done."""

    def __init__(self) -> None:
        self._busy: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._busy)

    def busy(self, pair: Hashable) -> bool:
        return pair in self._busy

    def try_acquire(self, pairs: Iterable[Hashable]) -> bool:
        """Take every pair, or none of them when one is already taken."""
        wanted = set(pairs)
        if wanted & self._busy:
            return False
        self._busy |= wanted
        return True

    def release(self, pairs: Iterable[Hashable]) -> None:
        for pair in pairs:
            self._busy.discard(pair)
