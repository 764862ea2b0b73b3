"""A deterministic usage workload and the ground truth it implies.

``generate(spec)`` yields the records to produce (key, value bytes) in produce order,
and fills a :class:`GroundTruth`: per (customer, meter) totals of the distinct valid
events, the dead letters expected by reason, and the (customer, threshold) alerts expected.
Everything follows from ``spec.seed``, so a test and a benchmark can regenerate it.

The mix: customers active by a Zipf law; events in event-time order with small jitter;
``duplicate_rate`` exact resends of earlier events (a producer retry); ``late_rate`` events
behind the stream, half within the grace period and half past it (corrections);
``invalid_rate`` records broken in one of several ways; optional packing of consecutive
events of one customer into one array record.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from streams.core.money import EXACT
from streams.core.windows import period_of

__all__ = ["GroundTruth", "WorkloadSpec", "generate"]

# (meter, aggregation, max value with 3 decimals, unit price in cents)
DEFAULT_METERS: tuple[tuple[str, str, int, Decimal], ...] = (
    ("cpu_seconds", "sum", 600, Decimal("0.0015")),
    ("gpu_seconds", "sum", 300, Decimal("0.08")),
    ("memory_gb_seconds", "sum", 2000, Decimal("0.0002")),
    ("executions", "count", 1, Decimal("0.01")),
)
INVALID_KINDS = ("invalid_json", "invalid_value", "too_many_digits", "missing_field",
                 "unknown_meter", "key_mismatch", "in_future", "too_old")


@dataclass(frozen=True)
class WorkloadSpec:
    events: int = 10_000
    customers: int = 100
    zipf_s: float = 1.1
    duplicate_rate: float = 0.05
    late_rate: float = 0.03
    invalid_rate: float = 0.02
    pack: int = 1  # events per record for packed records; 1 = single events
    span_ms: int = 20 * 60_000  # event time covered, ending at end_ms
    end_ms: int = 0  # 0: caller must set (e.g. now - 2 s)
    grace_ms: int = 5_000
    thresholds_minor: tuple[Decimal, ...] = (Decimal(10_000),)
    seed: int = 1
    meters: tuple[tuple[str, str, int, Decimal], ...] = DEFAULT_METERS


@dataclass
class GroundTruth:
    totals: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    dead_letters: Counter[str] = field(default_factory=Counter)
    alerts: set[tuple[str, str, str]] = field(default_factory=set)  # customer, period, threshold
    distinct_events: int = 0
    duplicates: int = 0
    late: int = 0
    records: int = 0
    events_sent: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "totals": {f"{c}|{m}": str(v) for (c, m), v in sorted(self.totals.items())},
            "dead_letters": dict(self.dead_letters),
            "alerts": sorted(list(a) for a in self.alerts),
            "distinct_events": self.distinct_events,
            "duplicates": self.duplicates,
            "late": self.late,
            "records": self.records,
            "events_sent": self.events_sent,
        }


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (k ** s) for k in range(1, n + 1)]


def generate(spec: WorkloadSpec, truth: GroundTruth) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) records in produce order; fill ``truth`` as they are made."""
    if spec.end_ms <= 0:
        raise ValueError("WorkloadSpec.end_ms must be set (e.g. now - 2000)")
    rng = random.Random(spec.seed)
    customers = [f"cust-{i:05d}" for i in range(spec.customers)]
    weights = _zipf_weights(spec.customers, spec.zipf_s)
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    prices = {m: p for m, _a, _x, p in spec.meters}
    aggs = {m: a for m, a, _x, _p in spec.meters}
    start = spec.end_ms - spec.span_ms
    sent: list[dict[str, object]] = []
    spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    pending: dict[str, list[dict[str, object]]] = defaultdict(list)

    def emit(customer: str, body: dict[str, object] | bytes) -> Iterator[tuple[bytes, bytes]]:
        if isinstance(body, bytes):
            truth.records += 1
            yield customer.encode(), body
            return
        truth.events_sent += 1
        if spec.pack <= 1:
            truth.records += 1
            yield customer.encode(), orjson.dumps(body)
            return
        batch = pending[customer]
        batch.append(body)
        if len(batch) >= spec.pack:
            truth.records += 1
            yield customer.encode(), orjson.dumps(batch)
            pending[customer] = []

    for i in range(spec.events):
        ts = start + (spec.span_ms * i) // spec.events + rng.randint(0, 1000)
        customer = customers[_pick(rng, cum)]
        roll = rng.random()
        if roll < spec.invalid_rate:
            kind = INVALID_KINDS[i % len(INVALID_KINDS)]
            truth.dead_letters[kind] += 1
            yield from emit(customer, _invalid(kind, customer, ts, i))
            continue
        if roll < spec.invalid_rate + spec.duplicate_rate and sent:
            truth.duplicates += 1
            dup = sent[rng.randrange(max(0, len(sent) - 500), len(sent))]
            yield from emit(str(dup["customer"]), dup)
            continue
        if roll < spec.invalid_rate + spec.duplicate_rate + spec.late_rate:
            truth.late += 1
            behind = (rng.randint(1_000, spec.grace_ms - 1) if rng.random() < 0.5
                      else rng.randint(spec.grace_ms * 6, spec.grace_ms * 60))
            ts = max(start, ts - behind)
        meter, agg, vmax, _p = spec.meters[rng.randrange(len(spec.meters))]
        value = Decimal(1) if agg == "count" else Decimal(rng.randint(0, vmax * 1000)) / 1000
        body = {"id": f"ev-{spec.seed}-{i}", "customer": customer, "meter": meter,
                "value": str(value), "timestamp": ts}
        sent.append(body)
        truth.distinct_events += 1
        qty = Decimal(1) if aggs[meter] == "count" else value
        truth.totals[(customer, meter)] = EXACT.add(truth.totals[(customer, meter)], qty)
        period = period_of(ts)
        spend[(customer, period)] = EXACT.add(spend[(customer, period)],
                                              EXACT.multiply(qty, prices[meter]))
        yield from emit(customer, body)
    for customer, batch in pending.items():
        if batch:
            truth.records += 1
            yield customer.encode(), orjson.dumps(batch)
    for (customer, period), amount in spend.items():
        for t in spec.thresholds_minor:
            if amount >= t:
                truth.alerts.add((customer, period, f"abs:{t}"))


def _pick(rng: random.Random, cum: list[float]) -> int:
    import bisect

    return min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1)


def _invalid(kind: str, customer: str, ts: int, i: int) -> bytes:
    base: dict[str, object] = {"id": f"bad-{i}", "customer": customer, "meter": "cpu_seconds",
                               "value": "1", "timestamp": ts}
    if kind == "invalid_json":
        return b'{"id": "truncated'
    if kind == "invalid_value":
        base["value"] = "-5"
    elif kind == "too_many_digits":
        base["value"] = "1234567890.1234567"
    elif kind == "missing_field":
        del base["meter"]
    elif kind == "unknown_meter":
        base["meter"] = "disk_gb_hours"
    elif kind == "key_mismatch":
        base["customer"] = customer + "-other"
    elif kind == "in_future":
        base["timestamp"] = ts + 3_600_000 * 24 * 3
    elif kind == "too_old":
        base["timestamp"] = ts - 40 * 86_400_000
    return orjson.dumps(base)


def totals_from_summaries(
    summaries: Mapping[str, Mapping[str, object]],
) -> dict[tuple[str, str], Decimal]:
    """Per (customer, meter) sum of deltas of distinct summaries (keyed by summary id)."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for s in summaries.values():
        key = (str(s["customer"]), str(s["meter"]))
        out[key] = EXACT.add(out[key], Decimal(str(s["delta"])))
    return dict(out)
