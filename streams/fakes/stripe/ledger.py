"""The fake's ledger: every accepted meter event, exact totals, identifier uniqueness.

Aggregation follows Stripe's meter configuration: a plain meter applies its formula
(sum, count, last) to every event; a pre-aggregated meter (``event_time_window`` hour or
day, UTC) first keeps only the most recently *received* event of each window, then
applies the formula to those. Cancelled events (meter event adjustments) no longer count.
All arithmetic is exact: a result that would round raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded

from streams.errors import FakeServerError
from streams.fakes.stripe.config import MeterConfig

__all__ = ["DuplicateIdentifierError", "Ledger", "LedgerEvent", "UnknownIdentifierError"]

_EXACT = Context(prec=200, traps=[Inexact, Rounded, InvalidOperation, Overflow])


class DuplicateIdentifierError(FakeServerError):
    """An event with this identifier was already accepted."""


class UnknownIdentifierError(FakeServerError):
    """No accepted event has this identifier."""


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One accepted meter event. ``seq`` is the arrival order (0, 1, ...)."""

    identifier: str
    event_name: str
    customer: str
    value: Decimal
    timestamp_s: int
    received_s: float
    seq: int
    api: str

    def to_json(self) -> dict[str, object]:
        return {
            "identifier": self.identifier,
            "event_name": self.event_name,
            "customer": self.customer,
            "value": format(self.value, "f"),
            "timestamp": self.timestamp_s,
            "received": self.received_s,
            "seq": self.seq,
            "api": self.api,
        }


class Ledger:
    """Accepted events per (Stripe customer, event name); identifiers are unique."""

    def __init__(self, meters: Iterable[MeterConfig]) -> None:
        self._meters = {m.event_name: m for m in meters}
        self._events: dict[str, LedgerEvent] = {}
        self._by_pair: dict[tuple[str, str], list[LedgerEvent]] = {}
        self._cancelled: dict[str, LedgerEvent] = {}
        self.duplicates_rejected = 0

    # -- writes ---------------------------------------------------------------------------

    def record(
        self,
        *,
        identifier: str,
        event_name: str,
        customer: str,
        value: Decimal,
        timestamp_s: int,
        received_s: float,
        api: str,
    ) -> LedgerEvent:
        """Accept one event; raise DuplicateIdentifierError if the identifier is taken.

        Identifiers share one namespace across v1 and v2, and a cancelled event's
        identifier stays taken.
        """
        if identifier in self._events:
            self.duplicates_rejected += 1
            raise DuplicateIdentifierError(identifier)
        if event_name not in self._meters:
            raise KeyError(event_name)
        event = LedgerEvent(
            identifier=identifier,
            event_name=event_name,
            customer=customer,
            value=value,
            timestamp_s=timestamp_s,
            received_s=received_s,
            seq=len(self._events),
            api=api,
        )
        self._events[identifier] = event
        self._by_pair.setdefault((customer, event_name), []).append(event)
        return event

    def cancel(self, identifier: str, *, now_s: float, window_s: float) -> LedgerEvent:
        """Cancel an accepted event received at most ``window_s`` ago.

        Raises UnknownIdentifierError (no such event), or ValueError (already cancelled,
        or received too long ago).
        """
        event = self._events.get(identifier)
        if event is None:
            raise UnknownIdentifierError(identifier)
        if identifier in self._cancelled:
            raise ValueError(f"the event {identifier} is already cancelled")
        if now_s - event.received_s > window_s:
            raise ValueError(f"the event {identifier} was received more than 24 hours ago")
        self._cancelled[identifier] = event
        self._by_pair[(event.customer, event.event_name)].remove(event)
        return event

    # -- reads ----------------------------------------------------------------------------

    def has(self, identifier: str) -> bool:
        return identifier in self._events

    @property
    def accepted_count(self) -> int:
        """Events accepted (cancelled ones included)."""
        return len(self._events)

    @property
    def identifiers(self) -> frozenset[str]:
        return frozenset(self._events)

    def events(
        self, customer: str | None = None, event_name: str | None = None
    ) -> list[LedgerEvent]:
        """Live (not cancelled) events, in arrival order, optionally filtered."""
        out = [
            e
            for (c, n), evs in self._by_pair.items()
            if (customer is None or c == customer) and (event_name is None or n == event_name)
            for e in evs
        ]
        out.sort(key=lambda e: e.seq)
        return out

    def aggregate(
        self, customer: str, event_name: str, start_s: int | None = None, end_s: int | None = None
    ) -> Decimal:
        """The meter's aggregated value for events with timestamp in [start_s, end_s)."""
        meter = self._meters[event_name]
        events = [
            e
            for e in self._by_pair.get((customer, event_name), ())
            if (start_s is None or e.timestamp_s >= start_s)
            and (end_s is None or e.timestamp_s < end_s)
        ]
        return _apply(meter, events)

    def total(self, customer: str, event_name: str) -> Decimal:
        """The aggregated value over all time for (Stripe customer, event name)."""
        return self.aggregate(customer, event_name)

    def totals(self) -> dict[tuple[str, str], Decimal]:
        """Every (Stripe customer, event name) with at least one live event."""
        return {pair: self.total(*pair) for pair, evs in self._by_pair.items() if evs}

    def window_totals(
        self, customer: str, event_name: str, window_s: int = 3600
    ) -> dict[int, Decimal]:
        """Aggregated value per UTC window of ``window_s`` seconds, keyed by window start."""
        events = self._by_pair.get((customer, event_name), ())
        starts = sorted({e.timestamp_s - e.timestamp_s % window_s for e in events})
        return {s: self.aggregate(customer, event_name, s, s + window_s) for s in starts}

    def snapshot(self) -> dict[str, object]:
        """JSON-ready view for GET /_fake/ledger."""
        return {
            "accepted": self.accepted_count,
            "duplicates_rejected": self.duplicates_rejected,
            "cancelled": sorted(self._cancelled),
            "totals": [
                {"customer": c, "event_name": n, "total": format(t, "f")}
                for (c, n), t in sorted(self.totals().items())
            ],
            "window_totals": [
                {
                    "customer": c,
                    "event_name": n,
                    "windows": {
                        str(s): format(v, "f") for s, v in self.window_totals(c, n).items()
                    },
                }
                for (c, n) in sorted(self.totals())
            ],
            "identifiers": sorted(self._events),
        }


def _apply(meter: MeterConfig, events: list[LedgerEvent]) -> Decimal:
    window_s = meter.window_s
    if window_s is not None:
        # Pre-aggregated meter: the most recently received event of each window wins.
        latest: dict[int, LedgerEvent] = {}
        for e in events:
            key = e.timestamp_s - e.timestamp_s % window_s
            if key not in latest or e.seq > latest[key].seq:
                latest[key] = e
        events = list(latest.values())
    if not events:
        return Decimal(0)
    if meter.formula == "count":
        return Decimal(len(events))
    if meter.formula == "last":
        return max(events, key=lambda e: (e.timestamp_s, e.seq)).value
    total = Decimal(0)
    for e in events:
        total = _EXACT.add(total, e.value)
    return total

