"""Configuration of the fake Stripe server: meters, keys, clock, faults (the clock and
fault types are the fakes' shared ones, :mod:`streams.fakes.faults`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from streams.fakes.faults import Clock, Faults

__all__ = ["FakeStripeConfig", "MeterConfig", "default_meters"]

Formula = Literal["sum", "count", "last"]
EventTimeWindow = Literal["none", "hour", "day"]


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One Stripe billing meter, fixed at start (Stripe meters can't be changed later)."""

    id: str
    event_name: str
    formula: Formula = "sum"
    event_time_window: EventTimeWindow = "none"
    customer_payload_key: str = "stripe_customer_id"
    value_payload_key: str = "value"
    display_name: str = ""

    def __post_init__(self) -> None:
        if self.formula not in ("sum", "count", "last"):
            raise ValueError(f"meter {self.id}: formula must be sum, count or last")
        if self.event_time_window not in ("none", "hour", "day"):
            raise ValueError(f"meter {self.id}: event_time_window must be none, hour or day")

    @property
    def window_s(self) -> int | None:
        """Length of the pre-aggregation window in seconds, None for a plain meter."""
        return {"none": None, "hour": 3600, "day": 86_400}[self.event_time_window]


def default_meters() -> tuple[MeterConfig, ...]:
    """Plain sum meters for meterstream's default meters."""
    names = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")
    return tuple(MeterConfig(id=f"mtr_fake_{n}", event_name=n, display_name=n) for n in names)


@dataclass(frozen=True, slots=True)
class FakeStripeConfig:
    """How the fake behaves.

    api_key: the only accepted secret key; None accepts any ``sk_test_``/``rk_test_`` key.
    clock: the fake's clock (timestamp limits, session expiry, cancel window).
    seed: seeds the fault RNG, so a fault sequence is reproducible.
    allow_negative_values: Stripe reports negative cycle usage as 0, so it accepts
        negative event values; set False to reject them.
    strict: reject synchronously (400) what Stripe only reports asynchronously after a
        200 (unknown event name, no or unknown customer, timestamp out of range). With
        False such v1 events get a 200 and land in ``error_reports``, as on Stripe. v2
        stream events are always validated asynchronously, as on Stripe.
    customers: when set, the only Stripe customer ids that exist.
    session_ttl_s: lifetime of a v2 meter event session token (Stripe: 15 minutes).
    """

    meters: tuple[MeterConfig, ...] = field(default_factory=default_meters)
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    clock: Clock = time.time
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    allow_negative_values: bool = True
    strict: bool = True
    customers: frozenset[str] | None = None
    session_ttl_s: float = 15 * 60.0
    max_past_s: int = 35 * 86_400
    max_future_s: int = 5 * 60
    cancel_window_s: int = 24 * 3600

    def __post_init__(self) -> None:
        ids = [m.id for m in self.meters]
        names = [m.event_name for m in self.meters]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise ValueError("meter ids and event names must be unique")
