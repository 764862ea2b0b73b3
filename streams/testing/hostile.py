"""Hostile ``usage.events`` records with known outcomes, for tests of the validator, the
aggregator core and a real worker.

:func:`hostile_workload` draws, from a seeded RNG, a mix of valid events and records
that are wrong in every way the contract names: bytes that are not JSON, truncated JSON,
NaN and Infinity (as JSON tokens and as strings), wrong types, negative values, too many
digits, unicode and empty ids, control characters, customers that disagree with the
record key, records without a key, timestamps far in the past or future, deep nesting,
huge arrays, huge keys, and records just under and over 1 MiB. Each record states what
must become of it: the dead letters it yields (by reason) and the valid events it holds.
The truth adds them up: events in == accepted + duplicates + dead letters.

Valid events use only ``sum`` meters, so a window total is the sum of its values.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from streams.core.events import MAX_RECORD_BYTES

__all__ = ["SUM_METERS", "HostileRecord", "HostileTruth", "hostile_workload"]

SUM_METERS = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds")
CUSTOMERS = ("acme", "zürich-ü", "客户-7", "a" * 128)
DAY_MS = 86_400_000

# Element-level mutations: (expected reason, field, value). None as value drops the field.
_FIELD_MUTATIONS: list[tuple[str, str, object]] = [
    ("missing_field", "id", None), ("missing_field", "value", None),
    ("missing_field", "timestamp", None), ("missing_field", "customer", None),
    ("invalid_id", "id", ""), ("invalid_id", "id", "x" * 129), ("invalid_id", "id", "a\x00b"),
    ("invalid_id", "id", "tab\there"), ("invalid_id", "id", "c1\x85"), ("invalid_id", "id", 7),
    ("invalid_id", "id", ["list"]),
    ("invalid_customer", "customer", ""), ("invalid_customer", "customer", "c\x1f"),
    ("invalid_customer", "customer", "c" * 129), ("invalid_customer", "customer", 5),
    ("unknown_field", "extra", 1), ("unknown_field", "Value", "1"),
    ("invalid_meter", "meter", "CPU"), ("invalid_meter", "meter", ""),
    ("invalid_meter", "meter", "1cpu"), ("invalid_meter", "meter", "çpu"),
    ("invalid_meter", "meter", 3),
    ("invalid_value", "value", "NaN"), ("invalid_value", "value", "Infinity"),
    ("invalid_value", "value", "-Infinity"), ("invalid_value", "value", "-1"),
    ("invalid_value", "value", -5), ("invalid_value", "value", 1.5),
    ("invalid_value", "value", "1e3"), ("invalid_value", "value", True),
    ("invalid_value", "value", "+1"), ("invalid_value", "value", " 1"),
    ("invalid_value", "value", ""), ("invalid_value", "value", "1."),
    ("invalid_value", "value", ".5"), ("invalid_value", "value", "0x10"),
    ("invalid_value", "value", "٣"), ("invalid_value", "value", {"v": 1}),
    ("invalid_value", "value", 10**25),  # beyond 64 bits: orjson reads it as a float
    ("too_many_digits", "value", "1234567890123456"),
    ("too_many_digits", "value", 10**15), ("too_many_digits", "value", "9" * 65),
    ("too_many_digits", "value", "0.0000000000001234567890123456"),
    ("invalid_timestamp", "timestamp", "yesterday"), ("invalid_timestamp", "timestamp", -1),
    ("invalid_timestamp", "timestamp", 2**53), ("invalid_timestamp", "timestamp", 1.5e12),
    ("invalid_timestamp", "timestamp", "2026-13-01T00:00:00Z"),
    ("invalid_timestamp", "timestamp", "2026-02-30T00:00:00Z"),
    ("invalid_timestamp", "timestamp", "2026-11-05T12:00:60Z"),
    ("invalid_timestamp", "timestamp", "1999-12-31T23:59:59Z"),
    ("invalid_timestamp", "timestamp", "2026-11-05 12:00:00"),
    ("invalid_attributes", "attributes", []),
    ("invalid_attributes", "attributes", {"a b": "x"}),
    ("invalid_attributes", "attributes", {"a": 1}),
    ("invalid_attributes", "attributes", {"a": "x" * 257}),
    ("invalid_attributes", "attributes", {f"k{i}": "v" for i in range(17)}),
    ("invalid_attributes", "attributes", {"a": {"b": {"c": "d"}}}),
    ("unknown_meter", "meter", "no_such_meter"),
]


@dataclass(frozen=True, slots=True)
class HostileRecord:
    """One record to produce, and what must become of it."""

    key: bytes | None
    value: bytes
    kind: str
    dead: tuple[str, ...] = ()  # the reason of each dead letter it yields
    valid: tuple[tuple[str, str, Decimal], ...] = ()  # (customer, meter, value) accepted
    duplicates: int = 0  # valid events in it that repeat an earlier event's id


@dataclass
class HostileTruth:
    """What a worker must report for a workload."""

    totals: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    dead: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    duplicates: int = 0
    events_in: int = 0

    def add(self, rec: HostileRecord) -> None:
        for customer, meter, value in rec.valid:
            key = (customer, meter)
            self.totals[key] = self.totals.get(key, Decimal(0)) + value
        self.dead.update(rec.dead)
        self.accepted += len(rec.valid)
        self.duplicates += rec.duplicates
        self.events_in += len(rec.valid) + len(rec.dead) + rec.duplicates


def _dumps(obj: object) -> bytes:
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class _Gen:
    def __init__(self, rng: random.Random, now_ms: int, event_ms: int) -> None:
        self.rng = rng
        self.now_ms = now_ms
        self.event_ms = event_ms
        self.n = 0
        self.sent: list[HostileRecord] = []  # valid single events, for duplicates

    def event(self, customer: str | None = None) -> dict[str, Any]:
        self.n += 1
        rng = self.rng
        units = rng.randint(0, 10**9)
        return {
            "id": f"h-{self.n}-{rng.getrandbits(32):08x}",
            "customer": customer or rng.choice(CUSTOMERS),
            "meter": rng.choice(SUM_METERS),
            "value": f"{units // 1000}.{units % 1000:03d}" if rng.random() < 0.7 else units,
            "timestamp": self.event_ms + rng.randint(0, 50_000),
        }

    @staticmethod
    def truth(ev: dict[str, Any]) -> tuple[str, str, Decimal]:
        return ev["customer"], ev["meter"], Decimal(str(ev["value"]))

    def element(self, customer: str) -> tuple[dict[str, Any], str | None]:
        """An event of ``customer``, valid (None) or wrong in one field (its reason)."""
        ev = self.event(customer)
        roll = self.rng.random()
        if roll < 0.3:
            if self.rng.random() < 0.3:
                ev["id"] = f"ключ-🔑-{self.n}"
            if self.rng.random() < 0.3:
                ev["attributes"] = {"note": "\x00\n\u2028 ok", "region": "eu"}
            return ev, None
        if roll < 0.4:
            ev["timestamp"] = self.rng.choice(
                [self.now_ms + DAY_MS, self.now_ms + 400 * DAY_MS, 2**53 - 1])
            return ev, "in_future"
        if roll < 0.5:
            ev["timestamp"] = self.rng.choice(
                [0, self.now_ms - 40 * DAY_MS, "2000-01-01T00:00:00Z"])
            return ev, "too_old"
        reason, name, value = self.rng.choice(_FIELD_MUTATIONS)
        if value is None:
            del ev[name]
        else:
            ev[name] = value
        return ev, reason

    def single(self) -> HostileRecord:
        customer = self.rng.choice(CUSTOMERS)
        ev, reason = self.element(customer)
        value, key = _dumps(ev), customer.encode()
        if reason is None:
            rec = HostileRecord(key, value, "valid", valid=(self.truth(ev),))
            self.sent.append(rec)
            return rec
        return HostileRecord(key, value, reason, dead=(reason,))

    def packed(self) -> HostileRecord:
        customer = self.rng.choice(CUSTOMERS)
        items = [self.element(customer) for _ in range(self.rng.randint(1, 8))]
        return HostileRecord(
            customer.encode(), _dumps([ev for ev, _ in items]), "packed",
            dead=tuple(r for _, r in items if r is not None),
            valid=tuple(self.truth(ev) for ev, r in items if r is None),
        )

    def mismatch(self) -> HostileRecord:
        ev = self.event()
        key = self.rng.choice([None, b"\xff\xfe", (ev["customer"] + " ").encode(), b"other",
                               b"k" * 200_000])
        return HostileRecord(key, orjson.dumps(ev), "key_mismatch", dead=("key_mismatch",))

    def duplicate(self) -> HostileRecord:
        if not self.sent:
            return self.single()
        original = self.rng.choice(self.sent)
        return HostileRecord(original.key, original.value, "duplicate", duplicates=1)

    def not_json(self) -> HostileRecord:
        ev = self.event()
        good = orjson.dumps(ev)
        rng = self.rng
        value = rng.choice([
            b"\xff" + rng.randbytes(rng.randint(0, 300)),
            good[: rng.randint(0, len(good) - 1)],
            good.replace(b'"value":', b'"value":NaN,"x":', 1),
            good.replace(b'"value":', b'"value":Infinity,"x":', 1),
            good.replace(b'"value":', b'"value":-Infinity,"x":', 1),
            b"[" * 2000 + b"]" * 2000,
            b'{"id": "\\ud800"}',
            b"",
        ])
        return HostileRecord(ev["customer"].encode(), value, "invalid_json", dead=("invalid_json",))

    def bad_shape(self) -> HostileRecord:
        rng = self.rng
        value = rng.choice([b'"a string"', b"42", b"null", b"true", b"[]",
                            b"[" + b"0," * 10_000 + b"0]"])
        return HostileRecord(rng.choice(CUSTOMERS).encode(), value, "invalid_shape",
                             dead=("invalid_shape",))

    def deep(self) -> HostileRecord:
        """Elements nested hundreds of levels deep: JSON orjson reads but cannot rewrite."""
        depth = self.rng.randint(260, 1000)
        nested = b"[" * depth + b"]" * depth
        customer = self.rng.choice(CUSTOMERS)
        return HostileRecord(customer.encode(), b"[" + nested + b"," + nested + b"]",
                             "deep_nesting", dead=("invalid_shape", "invalid_shape"))

    def large(self, over: bool) -> HostileRecord:
        """A packed record of valid events just under 1 MiB, or the same just over it."""
        customer = self.rng.choice(CUSTOMERS)
        events: list[dict[str, Any]] = []
        size = 2
        pad = {f"p{i}": "x" * 250 for i in range(16)}
        while True:
            ev = self.event(customer)
            ev["attributes"] = pad
            n = len(orjson.dumps(ev)) + 1
            if size + n > MAX_RECORD_BYTES:
                break
            events.append(ev)
            size += n
        value = orjson.dumps(events)
        if over:
            tail = b',"' + b"y" * (MAX_RECORD_BYTES - len(value) + 10) + b'"]'
            value = value[:-1] + tail
            assert len(value) > MAX_RECORD_BYTES
            return HostileRecord(customer.encode(), value, "record_too_large",
                                 dead=("record_too_large",))
        assert MAX_RECORD_BYTES - 5_000 < len(value) <= MAX_RECORD_BYTES
        return HostileRecord(customer.encode(), value, "just_under_1mib",
                             valid=tuple(self.truth(ev) for ev in events))

    def random_just_under(self) -> HostileRecord:
        """Random bytes just under 1 MiB: its dead letter must still fit in a message."""
        value = b"\xff" + self.rng.randbytes(MAX_RECORD_BYTES - 4096)
        return HostileRecord(b"acme", value, "invalid_json_1mib", dead=("invalid_json",))


def hostile_workload(
    seed: int, records: int, *, now_ms: int, event_ms: int, large: bool = True
) -> tuple[list[HostileRecord], HostileTruth]:
    """``records`` records (plus, with ``large``, three of about 1 MiB) and their truth.

    ``now_ms`` is the time the records will be produced (their Kafka timestamp);
    ``event_ms`` the start of the span of valid event times (at least ``now_ms`` minus
    a few minutes, at most ``now_ms``).
    """
    gen = _Gen(random.Random(seed), now_ms, event_ms)
    kinds: list[tuple[float, Callable[[], HostileRecord]]] = [
        (0.40, gen.single), (0.20, gen.packed), (0.08, gen.mismatch), (0.07, gen.duplicate),
        (0.12, gen.not_json), (0.08, gen.bad_shape), (0.05, gen.deep),
    ]
    weights = [w for w, _ in kinds]
    out = [gen.rng.choices(kinds, weights)[0][1]() for _ in range(records)]
    if large:
        for rec in (gen.large(over=False), gen.large(over=True), gen.random_just_under()):
            out.insert(gen.rng.randint(0, len(out)), rec)
    truth = HostileTruth()
    for rec in out:
        truth.add(rec)
    return out, truth
