"""What the sink sends to Stripe, and the one seam it sends through.

A :class:`MeterEvent` is one Stripe meter event, ready to send: its identifier is
deterministic, so resending it after a crash or a timeout is harmless (Stripe rejects a
second event with the same identifier, and :class:`MeterEventClient` reports that as
success).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

__all__ = ["MeterEvent", "MeterEventClient"]


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One Stripe meter event.

    identifier: unique per (customer, meter, window, seq[, part]); <= 100 chars.
    event_name: the Stripe meter's event name.
    stripe_customer_id: value of the meter's customer payload key (``stripe_customer_id``).
    value: exact, >= 0, at most 15 significant digits (Stripe's limit).
    timestamp_s: Unix seconds, inside the summary's window and within Stripe's
        35-days-back / 5-minutes-ahead limits.
    customer, meter: our own ids, for the one-call-in-flight rule, logs and metrics.
    """

    identifier: str
    event_name: str
    stripe_customer_id: str
    value: Decimal
    timestamp_s: int
    customer: str
    meter: str


class MeterEventClient(Protocol):
    """Sends meter events to Stripe (v1, v2 stream, dry-run file, or a fake).

    Both methods return normally when Stripe accepted every event, including events it
    already had (duplicate identifier). They raise
    :class:`streams.errors.RetryableSinkError` on 429, 5xx, timeouts and connection
    errors, and :class:`streams.errors.PermanentSinkError` on any other 4xx. They do not
    retry: retry policy, rate limiting and concurrency belong to the sink.
    """

    max_batch: int
    """How many events one call may carry: 1 for v1, 100 for the v2 stream."""

    async def send(self, events: Sequence[MeterEvent]) -> None: ...

    async def aclose(self) -> None: ...
