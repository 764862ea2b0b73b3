"""A stateful fake of Stripe's billing meter APIs (v1 meter events, v2 meter event
stream, meters, event summaries, adjustments), with an exact ledger, Stripe's limits
and seeded fault injection. Used by tests in-process and by the demo as a process
(``python -m streams.fakes.stripe --port 12111``).
"""

from streams.fakes.faults import Faults, ManualClock
from streams.fakes.stripe.app import FakeStripe
from streams.fakes.stripe.config import FakeStripeConfig, MeterConfig
from streams.fakes.stripe.ledger import Ledger, LedgerEvent

__all__ = [
    "FakeStripe",
    "FakeStripeConfig",
    "Faults",
    "Ledger",
    "LedgerEvent",
    "ManualClock",
    "MeterConfig",
]
