"""Whether a window total can be delivered to Stripe exactly (pure, standard library only).

The rule (README "What the worker accepts, the sink can deliver"; docs/contracts.md):

* A meter whose Stripe meter receives deltas (``stripe_window: none``, a plain sum meter)
  can carry any total: the sink splits a value of more than 15 significant digits into
  exact parts, at most one whole part per usage event (``streams.sink.plan``, rule 5).
  Nothing is refused here.
* A pre-aggregated Stripe meter (``stripe_window: hour|day``) keeps only the latest event
  of a window, so the window total must fit in one event: at most
  :data:`STRIPE_MAX_DIGITS` significant digits. The event whose addition would take the
  total past that is refused at intake with reason :data:`REASON` and goes to
  usage.events.dlq; the window keeps the total it had, which the sink can deliver.

The caller (the aggregator core) asks after the dedup decision and before it applies the
event, with the total the window would have with the event in it.
"""

from __future__ import annotations

from decimal import Decimal

from streams.core.money import significant_digits

__all__ = ["REASON", "STRIPE_MAX_DIGITS", "unbillable_total"]

REASON = "unbillable_total"
STRIPE_MAX_DIGITS = 15


def unbillable_total(total_after: Decimal, *, pre_aggregated: bool) -> str | None:
    """None when a window total of ``total_after`` can be billed exactly, else the detail
    of the refusal (reason :data:`REASON`) of the event that would make it.

    ``pre_aggregated``: the meter's Stripe meter keeps one event per window
    (``MeterSettings.stripe_window != "none"``).
    """
    if not pre_aggregated:
        return None
    digits = significant_digits(total_after)
    if digits <= STRIPE_MAX_DIGITS:
        return None
    return (
        f"the window total would have {digits} significant digits; its pre-aggregated "
        f"Stripe meter keeps one event per window, which carries at most {STRIPE_MAX_DIGITS}"
    )
