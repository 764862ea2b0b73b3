"""What a chaos run is judged by: the workload and its ground truth, the ledger diff, the
report row.

:class:`Workload` is a generated record list (duplicates, late and invalid records, see
:mod:`streams.loadgen.generate`) with the ground truth it implies. :func:`ledger_diff` compares
what the fake Stripe accepted with that truth per (customer, meter) and reports the
shortfall (usage lost) and the excess (usage billed twice) separately, priced in minor
units with the meters' rate card, exactly. :class:`ChaosReport` writes one row per
scenario (docs/reliability.md's table).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from streams.config import Settings
from streams.core.money import EXACT
from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate

__all__ = ["ChaosReport", "LedgerDiff", "Workload", "assert_exact", "ledger_diff",
           "metronome_alias", "stripe_id"]


def stripe_id(customer: str) -> str:
    """The Stripe customer id the chaos runs map ``customer`` to."""
    return f"cus_{customer}"


def metronome_alias(customer: str) -> str:
    """The Metronome ingest alias the chaos runs map ``customer`` to."""
    return f"acct_{customer}"


@dataclass
class Workload:
    """Generated records (key, value) in produce order, and their ground truth."""

    spec: WorkloadSpec
    records: list[tuple[bytes, bytes]]
    truth: GroundTruth

    @classmethod
    def make(cls, *, seed: int, events: int, customers: int, span_s: float,
             end_ms: int | None = None, duplicate_rate: float = 0.05, late_rate: float = 0.03,
             invalid_rate: float = 0.02) -> Workload:
        """Event time spans ``span_s`` seconds ending at ``end_ms`` (default: 70 s ago,
        so that every window can close by the first idle tick after the drain)."""
        end = end_ms if end_ms is not None else int(time.time() * 1000) - 70_000
        spec = WorkloadSpec(events=events, customers=customers, duplicate_rate=duplicate_rate,
                            late_rate=late_rate, invalid_rate=invalid_rate,
                            span_ms=int(span_s * 1000), end_ms=end, grace_ms=5_000, seed=seed)
        truth = GroundTruth()
        records = list(generate(spec, truth))
        return cls(spec, records, truth)

    @classmethod
    def fed_over(cls, feed_s: float, *, seed: int, events: int, customers: int) -> Workload:
        """A workload to feed over ``feed_s`` seconds from about now: its event time spans
        ``feed_s`` and ends 70 s before the feed does, as :meth:`make` ends 70 s ago."""
        return cls.make(seed=seed, events=events, customers=customers, span_s=feed_s,
                        end_ms=int(time.time() * 1000) + int((feed_s - 70) * 1000))

    @property
    def customers(self) -> list[str]:
        return sorted({c for c, _ in self.truth.totals} | {
            k.decode() for k, _ in self.records})

    @property
    def invalid(self) -> int:
        return sum(self.truth.dead_letters.values())

    def describe(self) -> dict[str, int]:
        t = self.truth
        return {"records": t.records, "distinct_valid": t.distinct_events,
                "duplicates": t.duplicates, "late": t.late, "invalid": self.invalid}


@dataclass(frozen=True)
class LedgerDiff:
    """Fake Stripe's ledger against the ground truth, per (customer, meter).

    ``lost_minor``: sum of shortfalls, ``excess_minor``: sum of excesses, each priced
    (value x unit price, minor units). A meter without a price counts its raw value, so a
    shortfall never hides behind a zero price.
    """

    pairs: int
    short_pairs: int
    over_pairs: int
    lost_minor: Decimal
    excess_minor: Decimal
    examples: tuple[tuple[str, str, Decimal, Decimal], ...]

    @property
    def exact(self) -> bool:
        return self.short_pairs == 0 and self.over_pairs == 0

    def __str__(self) -> str:
        return (f"{self.pairs} (customer, meter) pairs: {self.short_pairs} short by "
                f"{self.lost_minor} minor units in all (usage lost), {self.over_pairs} over by "
                f"{self.excess_minor} (billed twice); first differences (customer, meter, "
                f"want, got): {list(self.examples)}")


def ledger_diff(ledger: Mapping[tuple[str, str], Decimal],
                truth: Mapping[tuple[str, str], Decimal], settings: Settings,
                customer_prefix: str = "cus_") -> LedgerDiff:
    """Compare ``ledger`` (engine customer, event name) with ``truth`` (customer, meter);
    the engine's customer is ours with ``customer_prefix`` (``cus_`` Stripe, ``acct_``
    Metronome). Metronome event types are the meter names here (its default)."""
    meters = {m.name: m for m in settings.meters}
    by_event = {m.stripe_event_name: m.name for m in settings.meters}
    got: dict[tuple[str, str], Decimal] = {}
    for (stripe_customer, event_name), total in ledger.items():
        key = (stripe_customer.removeprefix(customer_prefix),
               by_event.get(event_name, event_name))
        got[key] = total
    lost = excess = Decimal(0)
    short = over = 0
    examples: list[tuple[str, str, Decimal, Decimal]] = []
    pairs = set(truth) | set(got)
    for pair in sorted(pairs):
        want, have = truth.get(pair, Decimal(0)), got.get(pair, Decimal(0))
        if want == have:
            continue
        meter = meters.get(pair[1])
        price = meter.unit_price_minor if meter is not None and meter.unit_price_minor else 1
        amount = EXACT.multiply(abs(EXACT.subtract(want, have)), Decimal(price))
        if have < want:
            short += 1
            lost = EXACT.add(lost, amount)
        else:
            over += 1
            excess = EXACT.add(excess, amount)
        if len(examples) < 6:
            examples.append((pair[0], pair[1], want, have))
    return LedgerDiff(len(pairs), short, over, lost, excess, tuple(examples))


@dataclass
class ChaosReport:
    """One row of the reliability table per scenario: printed, and appended as a JSON
    line to ``path`` when set."""

    scenario: str
    path: str | None = None
    started: float = field(default_factory=time.monotonic)

    def row(self, workload: Workload, diff: LedgerDiff, faults: Mapping[str, object],
            **extra: object) -> dict[str, object]:
        row: dict[str, object] = {
            "scenario": self.scenario,
            **workload.describe(),
            "faults": dict(faults),
            "pairs": diff.pairs,
            "lost_minor": str(diff.lost_minor),
            "billed_twice_minor": str(diff.excess_minor),
            "short_pairs": diff.short_pairs,
            "over_pairs": diff.over_pairs,
            "wall_s": round(time.monotonic() - self.started, 1),
            **extra,
        }
        print("chaos report:", orjson.dumps(row).decode(), flush=True)
        if self.path:
            with open(self.path, "ab") as f:
                f.write(orjson.dumps(row) + b"\n")
        return row


def assert_exact(diff: LedgerDiff) -> None:
    """The pass mark: nothing lost, nothing billed twice, and something was billed."""
    assert diff.lost_minor == 0 and diff.excess_minor == 0, str(diff)
    assert diff.exact and diff.pairs > 0, str(diff)
