"""What the sink does when Stripe refuses its key (401, 403): hold everything, probe slowly.

A refused key is not a fault of the summary being sent: every summary would fail the
same way. Dead-lettering them (the rule for other 4xx) would move the whole summaries
topic into the DLQ, committed, until someone replayed it by hand. Instead:

1. The call that was refused is not finished, so its offset is not committed. It tries
   again every ``retry_s`` seconds (the probe), and each refusal is logged at ERROR.
2. While the gate is closed the dispatcher starts no new call: at most the calls already
   started (``max_concurrency``) probe, so Stripe sees a handful of requests a minute.
   Read summaries wait in their queues; the consumer pauses at ``max_pending``.
3. ``meterstream_sink_stripe_auth_failing`` is 1 while the gate is closed (alert rule
   MeterstreamStripeAuthFailing) and ``meterstream_stripe_requests_total{outcome="auth"}``
   counts refused calls.
4. The first call Stripe accepts opens the gate (the key was fixed on Stripe's side, e.g.
   a restricted key got the permission). A new key in the settings needs a restart; the
   restarted sink resends from the last commit, and the identifiers make that harmless.
"""

from __future__ import annotations

import asyncio
import logging

from streams.errors import HeldForAuthError, PermanentSinkError
from streams.sink.metrics import SinkMetrics

__all__ = ["AUTH_STATUSES", "AuthGate", "is_auth_refusal"]

log = logging.getLogger(__name__)

AUTH_STATUSES = frozenset({401, 403})


def is_auth_refusal(exc: PermanentSinkError) -> bool:
    """Stripe refused the credentials, not the request."""
    return exc.status in AUTH_STATUSES


class AuthGate:
    """Open while Stripe accepts the key; see the module docstring."""

    def __init__(self, metrics: SinkMetrics, retry_s: float) -> None:
        self.retry_s = retry_s
        self._metrics = metrics
        self._open = asyncio.Event()
        self._open.set()
        self._metrics.auth_failing.set(0)

    @property
    def closed(self) -> bool:
        return not self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    def refused(self, exc: PermanentSinkError, detail: str) -> HeldForAuthError:
        """Close the gate (or keep it closed); the error to retry the call with."""
        first = not self.closed
        self._open.clear()
        self._metrics.auth_failing.set(1)
        log.error("stripe refused the API key (HTTP %s)%s: no summary is sent, dead-lettered "
                  "or committed until it is accepted; this call retries every %.0f s. Check "
                  "METERSTREAM_STRIPE__API_KEY and the key's permissions. Stripe said: %s",
                  exc.status, "" if first else " again", self.retry_s, detail)
        return HeldForAuthError(f"stripe refused the API key (HTTP {exc.status})",
                                retry_after_s=self.retry_s)

    def accepted(self) -> None:
        """A call went through: open the gate if it was closed."""
        if self.closed:
            self._open.set()
            self._metrics.auth_failing.set(0)
            log.warning("stripe accepts the API key again: sending resumes")
