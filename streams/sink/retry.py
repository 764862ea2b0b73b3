"""Retry policy: exponential backoff with full jitter (:class:`streams.util.backoff.Backoff`),
forever, on retryable errors only.

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
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.errors import RetryableSinkError
from streams.util.backoff import Backoff

__all__ = ["retry_forever"]

T = TypeVar("T")


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
