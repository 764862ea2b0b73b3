"""The one backoff: exponential, capped, with full jitter unless told otherwise.

Attempt n (0-based) may wait up to ``min(cap_s, base_s * 2**n)``. With jitter (the
default) the delay is uniform in [0, that ceiling): full jitter (AWS architecture blog,
"Exponential Backoff And Jitter") spreads the retries of many clients that failed
together, which is what a 429 burst or a broker restart needs. Without jitter the delay
is the ceiling itself, for a single client retrying alone (the producer's spool replay).

Used by the sink (Stripe/Metronome calls, the DLQ producer, waiting for Kafka at start),
the alerts tail's webhook, and the producer SDK's replay loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["MAX_RETRY_AFTER_S", "Backoff"]

# A Retry-After beyond this is not trusted blindly: we look again after 5 minutes.
MAX_RETRY_AFTER_S = 300.0


@dataclass(slots=True)
class Backoff:
    """Delays between attempts; see the module docstring. Durations in seconds."""

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def ceiling_s(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62))

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based).

        A ``Retry-After`` the server sent is a floor (up to ``MAX_RETRY_AFTER_S``): we
        never come back sooner than asked.
        """
        ceiling = self.ceiling_s(attempt)
        delay = self.rng.uniform(0, ceiling) if self.jitter else ceiling
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay
