"""Configuration of the fake Metronome: billable metrics, customers, token, clock, faults."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from streams.fakes.faults import Clock, Faults

__all__ = ["BillableMetric", "FakeCustomer", "FakeMetronomeConfig", "default_metrics"]

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class BillableMetric:
    """A Metronome billable metric over the events of one ``event_type``: SUM of the
    property ``aggregation_key`` (a decimal), or COUNT of the events."""

    id: str
    name: str
    event_type: str
    aggregation_type: Literal["SUM", "COUNT"] = "SUM"
    aggregation_key: str = "value"

    def __post_init__(self) -> None:
        if self.aggregation_type not in ("SUM", "COUNT"):
            raise ValueError(f"billable metric {self.id}: aggregation_type must be SUM or COUNT")


@dataclass(frozen=True, slots=True)
class FakeCustomer:
    """A Metronome customer: its id and the ingest aliases events may use instead."""

    id: str
    name: str = ""
    ingest_aliases: tuple[str, ...] = ()


def default_metrics() -> tuple[BillableMetric, ...]:
    """SUM metrics named like meterstream's default meters (and their event types)."""
    names = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions")
    return tuple(BillableMetric(id=f"bm_fake_{n}", name=n, event_type=n) for n in names)


@dataclass(frozen=True, slots=True)
class FakeMetronomeConfig:
    """How the fake behaves.

    api_token: the only accepted bearer token; None accepts any non-empty token.
    customers: the Metronome customers; None ("open") makes every ``customer_id`` its own
        customer. With customers set, an event whose ``customer_id`` is neither a
        customer id nor an ingest alias is accepted (200, as Metronome does) but matches
        no customer: it is counted in ``unmatched`` and in no usage.
    clock: the fake's clock (timestamp limits, dedup window).
    seed: seeds the fault RNG, so a fault sequence is reproducible.
    max_past_s / max_future_s: the accepted timestamp range around now (34 days back,
        24 hours ahead); outside it the request is refused with 400.
    dedup_s: how long a transaction id stays known (34 days).
    """

    billable_metrics: tuple[BillableMetric, ...] = field(default_factory=default_metrics)
    customers: tuple[FakeCustomer, ...] | None = None
    api_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    clock: Clock = time.time
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    max_past_s: int = 34 * DAY_S
    max_future_s: int = DAY_S
    dedup_s: int = 34 * DAY_S

    def __post_init__(self) -> None:
        ids = [m.id for m in self.billable_metrics]
        if len(set(ids)) != len(ids):
            raise ValueError("billable metric ids must be unique")
        if self.customers is not None:
            refs = [c.id for c in self.customers] + [
                a for c in self.customers for a in c.ingest_aliases]
            if len(set(refs)) != len(refs):
                raise ValueError("customer ids and ingest aliases must be unique")
