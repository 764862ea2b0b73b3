"""Rate card and thresholds: what usage costs, and which spend levels raise an alert.

Prices are in the currency's minor units (cents for USD) per unit of the meter, as exact
Decimals; spend is exact too (fractions of a cent are kept, never rounded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from streams.core.money import EXACT, format_decimal

__all__ = ["CustomerTerms", "MeterRule", "Threshold", "thresholds_for"]


@dataclass(frozen=True, slots=True)
class MeterRule:
    """How one meter aggregates within a window, and its unit price in minor units."""

    name: str
    aggregation: str  # "sum" | "count" | "max"
    unit_price_minor: Decimal
    # The billing engine keeps one event per window for this meter (a pre-aggregated Stripe
    # meter): a window total must fit in one event (streams.core.billable).
    pre_aggregated: bool = False


@dataclass(frozen=True, slots=True)
class Threshold:
    """A spend level; an alert fires when spend moves from below it to at or above it."""

    id: str
    kind: str  # "absolute" | "budget_percent"
    amount_minor: Decimal
    percent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CustomerTerms:
    """Per-customer overrides from the customers topic (customer record v1)."""

    thresholds_minor: tuple[Decimal, ...] | None = None
    budget_minor: Decimal | None = None
    budget_percents: tuple[Decimal, ...] = ()


def thresholds_for(
    terms: CustomerTerms | None, defaults: Iterable[Decimal]
) -> tuple[Threshold, ...]:
    """The thresholds in force for a customer, lowest first.

    Absolute thresholds are the customer's own when set, else the defaults. Budget
    percentages add ``percent% x budget`` thresholds. Ids are stable strings derived from
    the amount or percent, so the same threshold keeps its alert id across config reloads.
    """
    absolute = terms.thresholds_minor if terms and terms.thresholds_minor is not None else None
    amounts = tuple(defaults) if absolute is None else absolute
    out = [
        Threshold(id=f"abs:{format_decimal(a)}", kind="absolute", amount_minor=a) for a in amounts
    ]
    if terms and terms.budget_minor is not None:
        for pct in terms.budget_percents:
            amount = EXACT.divide(EXACT.multiply(terms.budget_minor, pct), Decimal(100))
            out.append(
                Threshold(
                    id=f"pct:{format_decimal(pct)}:{format_decimal(terms.budget_minor)}",
                    kind="budget_percent",
                    amount_minor=amount,
                    percent=pct,
                )
            )
    return tuple(sorted(out, key=lambda t: (t.amount_minor, t.id)))


def terms_from_record(record: Mapping[str, object]) -> CustomerTerms:
    """Build terms from a decoded customer record v1; unknown or bad fields are ignored."""

    def decimals(value: object) -> tuple[Decimal, ...] | None:
        if not isinstance(value, list):
            return None
        return tuple(Decimal(str(v)) for v in value if isinstance(v, str | int))

    budget = record.get("budget_minor")
    return CustomerTerms(
        thresholds_minor=decimals(record.get("thresholds_minor")),
        budget_minor=Decimal(str(budget)) if isinstance(budget, str | int) else None,
        budget_percents=decimals(record.get("budget_percents")) or (),
    )
