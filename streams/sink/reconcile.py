"""Compare our per-(customer, meter) period totals with the billing engine's (Stripe's or
Metronome's, per ``SINK__ENGINE``), and list every difference.

Ours come from usage.summaries read from the beginning by a fresh, group-less consumer
(nothing is committed), deduplicated by summary id, for windows that *start* in the
period (UTC month), which is also where the sink puts every event's timestamp:

* delta mode (``stripe_window == "none"``): the sum of ``delta``;
* pre-aggregated mode: per window the ``total`` of the highest ``seq``, summed.

Stripe's come from :func:`streams.sink.engines.stripe_meter.fetch_stripe_totals`, for every
customer that has a Stripe id (so usage Stripe has and we don't is found too). A customer
without a Stripe id is reported with Stripe's total as 0: its summaries are held by the
sink, unbilled. Dead-lettered summaries show up as differences as well: they are usage
that did not reach Stripe. Stripe aggregates asynchronously; run it once the sink is idle.

With the Metronome engine, Metronome's totals come from
:func:`streams.sink.engines.metronome.fetch_metronome_totals` (``POST /v1/usage`` over the
month, one SUM billable metric per meter), for every customer with a Metronome customer
id or ingest alias; every meter is in delta mode there.
"""

from __future__ import annotations

import calendar
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

from streams.config import MetronomeSettings, Settings, StripeSettings
from streams.core.money import EXACT, format_decimal
from streams.errors import PlanError
from streams.sink.customers import CustomerDirectory, parse_customer_record
from streams.sink.engines import engine_meters
from streams.sink.kafka_io import read_to_end
from streams.sink.plan import parse_summary

__all__ = ["Difference", "ReconcileResult", "StripeTotals", "period_bounds_ms", "reconcile"]

Pair = tuple[str, str]
StripeTotals = Callable[..., Awaitable[dict[Pair, Decimal]]]
"""``fetch_stripe_totals(stripe, *, period_start_s, period_end_s, customers, meters)``."""

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Difference:
    customer: str
    meter: str
    ours: Decimal
    stripe: Decimal
    note: str = ""

    @property
    def difference(self) -> Decimal:
        """Ours minus Stripe's: positive when Stripe is missing usage."""
        return EXACT.subtract(self.ours, self.stripe)


@dataclass(slots=True)
class ReconcileResult:
    period: str
    compared: int = 0
    summaries: int = 0
    duplicates: int = 0
    skipped: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every total matches, 1 otherwise."""
        return 1 if self.differences else 0


def period_bounds_ms(period: str) -> tuple[int, int]:
    """[start, end) of the UTC month ``YYYY-MM`` in epoch milliseconds."""
    match = _PERIOD.match(period)
    if match is None:
        raise ValueError(f"period must look like 2026-11, got {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    start = calendar.timegm((year, month, 1, 0, 0, 0))
    end = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    return start * 1000, end * 1000


async def our_totals(
    settings: Settings, period: str, result: ReconcileResult
) -> dict[Pair, Decimal]:
    """Our totals per (customer, meter) for ``period`` from usage.summaries."""
    start_ms, end_ms = period_bounds_ms(period)
    meters = engine_meters(settings)
    seen: set[str] = set()
    deltas: dict[Pair, Decimal] = {}
    latest: dict[tuple[str, str, int], tuple[int, Decimal]] = {}
    async for record in read_to_end(settings.kafka, settings.topics.summaries,
                                    client_id=f"{settings.kafka.client_id}-reconcile"):
        try:
            s = parse_summary(record.value if record.value is not None else b"")
        except PlanError:
            result.skipped += 1
            continue
        if s.id in seen:
            result.duplicates += 1
            continue
        seen.add(s.id)
        meter = meters.get(s.meter)
        if meter is None:
            result.skipped += 1
            continue
        if not start_ms <= s.window_start_ms < end_ms:
            continue
        result.summaries += 1
        pair = (s.customer, s.meter)
        if meter.stripe_window == "none":
            deltas[pair] = EXACT.add(deltas.get(pair, Decimal(0)), s.delta)
        else:
            key = (s.customer, s.meter, s.window_start_ms)
            if key not in latest or latest[key][0] < s.seq:
                latest[key] = (s.seq, s.total)
    for (customer, meter_name, _), (_, total) in latest.items():
        pair = (customer, meter_name)
        deltas[pair] = EXACT.add(deltas.get(pair, Decimal(0)), total)
    return deltas


async def load_customers(settings: Settings) -> dict[str, str]:
    """Customer -> the engine's customer id, from the whole customers topic."""
    directory = CustomerDirectory()
    async for record in read_to_end(settings.kafka, settings.topics.customers,
                                    client_id=f"{settings.kafka.client_id}-reconcile"):
        parsed = parse_customer_record(record.key, record.value, settings.sink.engine)
        if parsed is not None:
            directory.apply(*parsed)
    return {c: sid for c in directory.customers() if (sid := directory.get(c)) is not None}


def compare(
    ours: Mapping[Pair, Decimal], stripe: Mapping[Pair, Decimal], mapped: Mapping[str, str],
    engine: str = "stripe",
) -> tuple[int, list[Difference]]:
    """(pairs compared, differences in customer, meter order)."""
    pairs = sorted(set(ours) | set(stripe))
    differences = []
    for customer, meter in pairs:
        mine = ours.get((customer, meter), Decimal(0))
        theirs = stripe.get((customer, meter), Decimal(0))
        if mine != theirs:
            note = "" if customer in mapped else (
                "no stripe_customer_id" if engine == "stripe" else f"no {engine} customer id")
            differences.append(Difference(customer, meter, mine, theirs, note))
    return len(pairs), differences


def _default_fetch(engine: str) -> StripeTotals:
    if engine == "metronome":
        from streams.sink.engines.metronome import fetch_metronome_totals

        return fetch_metronome_totals
    from streams.sink.engines.stripe_meter import fetch_stripe_totals

    return fetch_stripe_totals


async def reconcile(
    settings: Settings,
    period: str,
    *,
    out: TextIO | None = None,
    fetch: StripeTotals | None = None,
) -> ReconcileResult:
    """Compare and print; ``result.exit_code`` is non-zero when anything differs."""
    engine = settings.sink.engine
    engine_settings: StripeSettings | MetronomeSettings = settings.stripe
    if engine == "metronome":
        engine_settings = settings.metronome
    fetcher = fetch if fetch is not None else _default_fetch(engine)
    stream = out if out is not None else sys.stdout
    result = ReconcileResult(period)
    start_ms, end_ms = period_bounds_ms(period)
    ours = await our_totals(settings, period, result)
    mapped = await load_customers(settings)
    stripe = await fetcher(
        engine_settings,
        period_start_s=start_ms // 1000,
        period_end_s=end_ms // 1000,
        customers=mapped,
        meters={name: m.stripe_event_name for name, m in engine_meters(settings).items()},
    )
    result.compared, result.differences = compare(ours, stripe, mapped, engine)
    label = "" if engine == "stripe" else f" ({engine})"
    print(f"reconcile {period}{label}: {result.summaries} summaries "
          f"({result.duplicates} duplicates, {result.skipped} skipped), "
          f"{result.compared} customer/meter pairs, "
          f"{len(result.differences)} differences", file=stream)
    if result.differences:
        print(f"customer\tmeter\tours\t{engine}\tdifference\tnote", file=stream)
    for d in result.differences:
        print(f"{d.customer}\t{d.meter}\t{format_decimal(d.ours)}\t{format_decimal(d.stripe)}\t"
              f"{format_decimal(d.difference)}\t{d.note}", file=stream)
    return result
