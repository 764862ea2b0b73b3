"""Retry policy: exponential backoff with full jitter, forever, on retryable errors only.

Why forever: a retryable error (429, 5xx, timeout, dropped connection) says "later", and
giving up would mean either dropping usage or sending it to the DLQ for a human to replay.
While the process runs, the summary stays uncommitted and is tried again with a capped
delay; the sink surfaces the situation through ``meterstream_stripe_requests_total``
(outcome ``retryable``) and a log line per attempt, at ERROR once ``escalate_after``
attempts have failed. A shutdown cancels the wait; the summary is not committed, so the
next run sends it again under the same identifier.

:class:`streams.errors.PermanentSinkError` is never retried: the caller dead-letters it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from streams.errors import RetryableSinkError

__all__ = ["Backoff", "retry_forever"]

T = TypeVar("T")
# A Retry-After beyond this is not trusted blindly: we look again after 5 minutes.
MAX_RETRY_AFTER_S = 300.0


@dataclass(slots=True)
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n)).

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads the
    retries of many pairs that failed together, which is what a 429 burst needs. A
    ``Retry-After`` from Stripe is a floor: we never come back sooner than asked.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 62)))
        delay = self.rng.uniform(0, ceiling)
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay


async def retry_forever(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    on_retry: Callable[[int, RetryableSinkError, float], None] | None = None,
    before_retry: Callable[[], Awaitable[None]] | None = None,
    after_wait: Callable[[], Awaitable[None]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``attempt`` until it returns; retry on RetryableSinkError only.

    ``on_retry(n, error, delay_s)`` reports each failure (logs, metrics). ``before_retry``
    runs before the wait and ``after_wait`` after it: the sink uses them to give back its
    concurrency slot while it sleeps, so a backing-off call does not block others.
    Anything else ``attempt`` raises (PermanentSinkError, CancelledError) propagates.
    """
    n = 0
    while True:
        try:
            return await attempt()
        except RetryableSinkError as exc:
            delay = backoff.delay_s(n, exc.retry_after_s)
            if on_retry is not None:
                on_retry(n, exc, delay)
            n += 1
        if before_retry is not None:
            await before_retry()
        await sleep(delay)
        if after_wait is not None:
            await after_wait()
