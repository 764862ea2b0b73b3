"""The fake Metronome's ledger: every accepted usage event, transaction-id dedup, exact
usage per customer and billable metric.

Every number is exact (Decimal, 200 digits, traps on rounding): property values are
read from their strings as Metronome reads them, as arbitrary-precision decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded

from streams.fakes.metronome.config import BillableMetric

__all__ = ["AcceptedEvent", "MetronomeLedger"]

_EXACT = Context(prec=200, traps=[Inexact, Rounded, InvalidOperation, Overflow])


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """One accepted usage event; ``customer`` is the resolved Metronome customer id (None:
    it matched no customer)."""

    transaction_id: str
    customer_id: str
    customer: str | None
    event_type: str
    timestamp_s: float
    properties: Mapping[str, object]
    received_s: float
    seq: int

    def to_json(self) -> dict[str, object]:
        return {
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "customer": self.customer,
            "event_type": self.event_type,
            "timestamp": self.timestamp_s,
            "properties": dict(self.properties),
            "received": self.received_s,
            "seq": self.seq,
        }


def _number(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class MetronomeLedger:
    """Accepted events by transaction id; a transaction id counts once within ``dedup_s``."""

    def __init__(self, metrics: Iterable[BillableMetric], dedup_s: int) -> None:
        self.metrics = {m.id: m for m in metrics}
        self.dedup_s = dedup_s
        self.events: dict[str, AcceptedEvent] = {}
        self.duplicates_ignored = 0
        self.unmatched = 0

    @property
    def accepted_count(self) -> int:
        return len(self.events)

    def is_duplicate(self, transaction_id: str, now_s: float) -> bool:
        seen = self.events.get(transaction_id)
        return seen is not None and now_s - seen.received_s < self.dedup_s

    def record(self, *, transaction_id: str, customer_id: str, customer: str | None,
               event_type: str, timestamp_s: float, properties: Mapping[str, object],
               now_s: float) -> bool:
        """Accept one event; False (and nothing recorded) for a known transaction id."""
        if self.is_duplicate(transaction_id, now_s):
            self.duplicates_ignored += 1
            return False
        if customer is None:
            self.unmatched += 1
        self.events[transaction_id] = AcceptedEvent(
            transaction_id, customer_id, customer, event_type, timestamp_s, dict(properties),
            now_s, len(self.events))
        return True

    def usage(self, customer: str, metric_id: str, start_s: float, end_s: float) -> Decimal:
        """The billable metric's value for ``customer`` over [start_s, end_s)."""
        metric = self.metrics[metric_id]
        total = Decimal(0)
        for e in self.events.values():
            if (e.customer != customer or e.event_type != metric.event_type
                    or not start_s <= e.timestamp_s < end_s):
                continue
            if metric.aggregation_type == "COUNT":
                total = _EXACT.add(total, 1)
                continue
            value = _number(e.properties.get(metric.aggregation_key))
            if value is not None:
                total = _EXACT.add(total, value)
        return total

    def customers(self) -> list[str]:
        return sorted({e.customer for e in self.events.values() if e.customer is not None})

    def totals(self, value_property: str = "value") -> dict[tuple[str, str], Decimal]:
        """Sum of ``value_property`` per (customer, event type), over all time: what the
        chaos verdict compares with the ground truth."""
        out: dict[tuple[str, str], Decimal] = {}
        for e in self.events.values():
            value = _number(e.properties.get(value_property))
            if e.customer is None or value is None:
                continue
            key = (e.customer, e.event_type)
            out[key] = _EXACT.add(out.get(key, Decimal(0)), value)
        return out

    def snapshot(self) -> dict[str, object]:
        return {
            "accepted": self.accepted_count,
            "duplicates_ignored": self.duplicates_ignored,
            "unmatched": self.unmatched,
            "totals": [{"customer": c, "event_type": t, "value": format(v, "f")}
                       for (c, t), v in sorted(self.totals().items())],
        }
