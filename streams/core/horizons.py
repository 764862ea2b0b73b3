"""How far back each billing engine accepts usage, and the worker's ``too_old`` bound
that follows from it (pure: integers only).

The money invariant needs: whatever the worker accepts, the configured engine can bill.
An accepted event ends up in a summary whose timestamp the sink puts inside the event's
window, no older than the engine's horizon less the sink's safety margin
(:data:`SINK_PAST_MARGIN_S`, which covers request latency and clock skew). The summary
is sent when its window closes (a late event's correction: at once), so the event
must still be inside that range a window and a grace period after it was accepted:

    max_age = horizon - sink margin - window - grace

capped by the operator's own ``AGGREGATOR__MAX_AGE_S``. With the defaults (1 h window,
5 min grace): Stripe 35 days - 80 min, Metronome 34 days - 80 min.
"""

from __future__ import annotations

__all__ = [
    "ENGINE_HORIZON_S",
    "ENGINE_MAX_FUTURE_S",
    "SINK_FUTURE_MARGIN_S",
    "SINK_PAST_MARGIN_S",
    "max_age_ms_for",
]

DAY_S = 86_400
ENGINE_HORIZON_S: dict[str, int] = {
    # Stripe Billing Meters: timestamps within the past 35 calendar days.
    "stripe": 35 * DAY_S,
    # Metronome ingest: events backdated up to 34 days (and deduplicated for 34 days).
    "metronome": 34 * DAY_S,
}
ENGINE_MAX_FUTURE_S: dict[str, int] = {
    "stripe": 5 * 60,  # Stripe: at most 5 minutes ahead
    "metronome": 24 * 3600,  # Metronome: more than 24 hours ahead is rejected
}
# The sink keeps this far inside the engine's past limit (request latency, clock skew);
# timestamps are planned again on every attempt, so retries need no extra room.
SINK_PAST_MARGIN_S = 15 * 60
SINK_FUTURE_MARGIN_S = 60


def max_age_ms_for(*, engine: str, window_s: int, grace_s: int, max_age_s: int) -> int:
    """The worker's ``too_old`` bound in ms for ``engine`` (see the module docstring).

    Raises ValueError for an unknown engine or a window and grace that leave no room.
    """
    try:
        horizon_s = ENGINE_HORIZON_S[engine]
    except KeyError:
        raise ValueError(f"unknown billing engine {engine!r}") from None
    room_s = horizon_s - SINK_PAST_MARGIN_S - window_s - grace_s
    if room_s <= 0:
        raise ValueError(f"window_s + grace_s leave no room inside {engine}'s horizon")
    return min(max_age_s, room_s) * 1000
