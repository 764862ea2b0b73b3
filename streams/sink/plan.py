"""Turn one meter summary v1 into the Stripe meter events that carry it (pure).

Nothing here does I/O or reads the clock: ``now_ms`` is passed in, so the sink plans again
on every attempt (a retry hours into an outage gets fresh timestamp limits) while the
identifiers stay the same.

Rules, in the order :func:`plan_events` applies them:

1. **What is sent.** Delta mode (``stripe_window == "none"``, a plain Stripe sum meter):
   the summary's ``delta``. Pre-aggregated mode (``"hour"``/``"day"``, Stripe keeps the
   most recently received event of a window): the window ``total``.
2. **Zero is not sent.** A zero value plans no event; the sink counts the summary as
   finished and commits past it. Safe for both modes because every aggregation we have
   (sum, count, max of values >= 0) only grows, so a zero total means nothing was ever sent
   for that window, and a zero delta adds nothing. Likewise a pre-aggregated correction
   whose delta is zero: its total equals the one its predecessor already delivered.
3. **Negative values are refused** (``negative_value``, to the DLQ). Late events only add,
   so a negative delta or total means an upstream bug; sending it would silently lower an
   invoice, and the MeterEvent contract says values are >= 0.
4. **Identifiers.** ``identifier_base(summary.id)``: the summary id itself when it is
   short and plain (``ms1_`` + 40 hex = 44 characters), else ``msh_`` + 40 hex of its
   sha256. The summary id hashes (customer, meter, window start, seq), so every
   correction gets a fresh identifier (in pre-aggregated mode the newest total wins) and
   a replay resends the same identifiers (Stripe rejects the duplicate, which the client
   reports as success).
5. **More than 15 significant digits** (Stripe's limit): in delta mode the value is split
   into parts of at most 15 significant digits each (most significant digits first) that
   add up exactly to the value; a sum meter adds them back. Part k of n has identifier
   ``f"{base}.p{k}of{n}"`` (k from 1). The split depends only on the value, which a
   summary id fixes, so it is deterministic. There is no fixed cap on n: every valid
   total is billed exactly. Each usage event carries less than ``10**15``, so a window of
   ``event_count`` events never needs more than ``event_count`` whole parts (plus at most
   one part per 15 digits of fraction): Stripe never receives more events for a window
   than the window had usage events, plus a few. A summary whose value needs more whole
   parts than its ``event_count`` cannot come from valid events and is
   ``invalid_summary``. The parts are computed on access (:class:`PlannedValues`), so a
   long split holds no list in memory. In pre-aggregated mode a split is impossible
   (only the last event of a window counts): ``too_many_digits``; the worker refuses at
   intake the event that would make such a total (``streams.core.billable``).
6. **Timestamp.** The window start, clamped into Stripe's accepted range: no older than
   35 days minus :data:`PAST_MARGIN_S` and no later than 5 minutes minus
   :data:`FUTURE_MARGIN_S` ahead of now, and always inside ``[window_start, window_end)``.
   Any instant of the window puts the event in the right billing period; in
   pre-aggregated mode the window must also equal Stripe's UTC hour/day bucket
   (``window_mismatch`` otherwise), so any instant inside it lands in the right bucket. A
   window that ends before the oldest accepted instant is ``too_old_for_stripe``
   (permanent); one that starts after the latest accepted instant (clock skew) raises
   :class:`streams.errors.RetryableSinkError` so the sink waits for time to pass.

Engines: the rules above are Stripe's (:data:`STRIPE_LIMITS`). The Metronome engine
(:data:`METRONOME_LIMITS`) plans with 34 days back and 24 hours ahead, never splits a
value (no digit limit; ``too_old_for_metronome`` for a window out of range) and every
meter is in delta mode there (see :func:`streams.sink.engines.engine_meters`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, overload

import orjson

from streams.config import MeterSettings
from streams.core.horizons import (
    ENGINE_HORIZON_S,
    ENGINE_MAX_FUTURE_S,
    SINK_FUTURE_MARGIN_S,
    SINK_PAST_MARGIN_S,
)
from streams.core.money import EXACT, significant_digits
from streams.errors import PlanError, RetryableSinkError
from streams.sink.model import MeterEvent

__all__ = [
    "FUTURE_MARGIN_S",
    "MAX_DIGITS",
    "METRONOME_LIMITS",
    "PAST_MARGIN_S",
    "STRIPE_LIMITS",
    "STRIPE_MAX_FUTURE_S",
    "STRIPE_MAX_PAST_S",
    "EngineLimits",
    "PlannedValues",
    "Summary",
    "build_events",
    "canonical",
    "identifier_base",
    "parse_summary",
    "plan_events",
    "plan_values",
    "split_parts",
    "split_value",
    "timestamp_for",
    "window_problems",
]

MAX_DIGITS = 15
STRIPE_MAX_PAST_S = ENGINE_HORIZON_S["stripe"]
STRIPE_MAX_FUTURE_S = ENGINE_MAX_FUTURE_S["stripe"]
# Covers request latency and clock skew between us and Stripe. The timestamp is computed
# again on every attempt, so the margins never need to cover retry delays.
PAST_MARGIN_S = SINK_PAST_MARGIN_S
FUTURE_MARGIN_S = SINK_FUTURE_MARGIN_S


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """What one billing engine accepts: timestamp range (seconds around now) and the
    significant digits of a value (None: any, the engine computes with exact decimals)."""

    name: str
    max_past_s: int
    max_future_s: int
    max_digits: int | None
    past_margin_s: int = SINK_PAST_MARGIN_S
    future_margin_s: int = SINK_FUTURE_MARGIN_S


STRIPE_LIMITS = EngineLimits("stripe", STRIPE_MAX_PAST_S, STRIPE_MAX_FUTURE_S, MAX_DIGITS)
# Metronome: backdated at most 34 days, at most 24 h ahead; property values are strings
# that Metronome reads as arbitrary-precision decimals, so no digit limit.
METRONOME_LIMITS = EngineLimits("metronome", ENGINE_HORIZON_S["metronome"],
                                ENGINE_MAX_FUTURE_S["metronome"], None)
_WINDOW_S = {"hour": 3600, "day": 86_400}
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEMA = "meter_summary.v1"


@dataclass(frozen=True, slots=True)
class Summary:
    """The fields of a meter summary v1 the sink uses (values exact)."""

    id: str
    customer: str
    meter: str
    window_start_ms: int
    window_end_ms: int
    seq: int
    total: Decimal
    delta: Decimal
    event_count: int


def _decimal(obj: dict[str, Any], name: str) -> Decimal:
    raw = obj.get(name)
    # bool is an int subclass and a float went through binary: both are refused.
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise PlanError("invalid_summary", f"{name} must be a decimal string or an integer")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise PlanError("invalid_summary", f"{name} is not a decimal number") from None
    if not value.is_finite():
        raise PlanError("invalid_summary", f"{name} must be finite")
    return value


def _int(obj: dict[str, Any], name: str) -> int:
    raw = obj.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise PlanError("invalid_summary", f"{name} must be an integer")
    return raw


def _str(obj: dict[str, Any], name: str) -> str:
    raw = obj.get(name)
    if not isinstance(raw, str) or not 1 <= len(raw) <= 128:
        raise PlanError("invalid_summary", f"{name} must be a string of 1..128 characters")
    return raw


def window_problems(meters: Iterable[MeterSettings], window_s: int) -> list[str]:
    """Configuration errors for pre-aggregated meters: their Stripe window (UTC hour or
    day, latest event wins) must be exactly the aggregator's window, or every summary of
    the meter would fail rule 6 (``window_mismatch``)."""
    return [
        f"meter {m.name}: stripe_window {m.stripe_window!r} needs aggregator.window_s = "
        f"{_WINDOW_S[m.stripe_window]}, not {window_s}"
        for m in meters
        if m.stripe_window != "none" and _WINDOW_S[m.stripe_window] != window_s
    ]


def parse_summary(raw: bytes | dict[str, Any]) -> Summary:
    """Decode and check a meter summary v1; raise :class:`PlanError` (``invalid_summary``)."""
    if isinstance(raw, dict):
        obj = raw
    else:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PlanError("invalid_summary", "not valid JSON") from None
    if not isinstance(obj, dict):
        raise PlanError("invalid_summary", "not a JSON object")
    if obj.get("schema") != _SCHEMA:
        raise PlanError("invalid_summary", f"schema must be {_SCHEMA!r}")
    summary = Summary(
        id=_str(obj, "id"),
        customer=_str(obj, "customer"),
        meter=_str(obj, "meter"),
        window_start_ms=_int(obj, "window_start_ms"),
        window_end_ms=_int(obj, "window_end_ms"),
        seq=_int(obj, "seq"),
        total=_decimal(obj, "total"),
        delta=_decimal(obj, "delta"),
        event_count=_int(obj, "event_count"),
    )
    if summary.window_end_ms <= summary.window_start_ms or summary.window_start_ms < 0:
        raise PlanError("invalid_summary", "window_end_ms must be after window_start_ms >= 0")
    if summary.seq < 0:
        raise PlanError("invalid_summary", "seq must be >= 0")
    if summary.event_count < 0:
        raise PlanError("invalid_summary", "event_count must be >= 0")
    return summary


def split_parts(value: Decimal, max_digits: int = MAX_DIGITS) -> tuple[int, tuple[Decimal, ...]]:
    """Split ``value`` (> 0) into ``whole`` parts of ``10 ** max_digits - 1`` plus ``tail``.

    Every part has at most ``max_digits`` significant digits, counted as
    :func:`streams.core.money.significant_digits` counts them (the plain-notation reading,
    so a part is always below ``10 ** max_digits``). The parts add up to ``value`` exactly:

    1. an integer part of ``10 ** max_digits`` or more gives ``whole`` parts of
       ``10 ** max_digits - 1`` each;
    2. the rest (integer part now below ``10 ** max_digits``) has its digits cut into runs
       of ``max_digits`` from the most significant end, each keeping its place value; the
       first run covers the whole integer part, later runs are pure fractions. Runs of
       zeros are dropped. No rounding can happen: digits are only regrouped.

    A value that fits returns ``(0, (canonical(value),))``.
    """
    if value <= 0:
        raise ValueError("split_parts needs a value > 0")
    if significant_digits(value) <= max_digits:
        return 0, (canonical(value),)
    largest = 10**max_digits - 1
    whole = int(value) // largest
    rest = EXACT.subtract(value, Decimal(whole * largest))
    tail: list[Decimal] = []
    if rest > 0:
        _, digits, exponent = canonical(rest).as_tuple()
        assert isinstance(exponent, int)  # finite, checked by the caller
        n = len(digits)
        for start in range(0, n, max_digits):
            run = digits[start : start + max_digits]
            if any(run):
                # The run's last digit has place value 10 ** (exponent + digits after it).
                tail.append(canonical(Decimal((0, run, exponent + n - start - len(run)))))
    return whole, tuple(tail)


def split_value(value: Decimal, max_digits: int = MAX_DIGITS) -> list[Decimal]:
    """The parts of :func:`split_parts` as one list (for small values and tests)."""
    whole, tail = split_parts(value, max_digits)
    return [Decimal(10**max_digits - 1)] * whole + list(tail)


class PlannedValues(Sequence[tuple[str, Decimal]]):
    """The (identifier, value) pairs that carry one value, computed on access.

    ``whole`` parts of ``10**15 - 1`` come first, then ``tail``; part k of n (k from 1) has
    identifier ``f"{base}.p{k}of{n}"``, or ``base`` alone when n is 1. Indexing and slicing
    cost O(length of the answer), never O(n), so a split into millions of parts (a window
    of millions of maximal events) is sent in chunks without a list of them in memory.
    """

    __slots__ = ("_base", "_largest", "_n", "_tail", "_whole")

    def __init__(self, base: str, whole: int, tail: Sequence[Decimal]) -> None:
        self._base = base
        self._whole = whole
        self._tail = tuple(tail)
        self._n = whole + len(self._tail)
        self._largest = Decimal(10**MAX_DIGITS - 1)

    def __len__(self) -> int:
        return self._n

    def _at(self, i: int) -> tuple[str, Decimal]:
        value = self._largest if i < self._whole else self._tail[i - self._whole]
        if self._n == 1:
            return self._base, value
        return f"{self._base}.p{i + 1}of{self._n}", value

    @overload
    def __getitem__(self, index: int) -> tuple[str, Decimal]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, Decimal]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[str, Decimal] | list[tuple[str, Decimal]]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(self._n))]
        i = index + self._n if index < 0 else index
        if not 0 <= i < self._n:
            raise IndexError("part index out of range")
        return self._at(i)

    def __repr__(self) -> str:
        return f"PlannedValues({self._base!r}, whole={self._whole}, tail={self._tail!r})"


def canonical(value: Decimal) -> Decimal:
    """The same number without fractional trailing zeros and without a positive exponent.

    ``12.50`` becomes ``12.5`` and ``123E+2`` becomes ``12300``, so the plain string sent
    to Stripe shows no digit that is not needed. Only digits move: the value is unchanged.
    """
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    kept = list(digits)
    while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if exponent > 0:
        kept.extend([0] * exponent)
        exponent = 0
    return Decimal((sign, tuple(kept), exponent))


def identifier_base(summary_id: str) -> str:
    """The Stripe identifier for a summary (see rule 4 of the module docstring)."""
    if _PLAIN_ID.match(summary_id):
        return summary_id
    return "msh_" + hashlib.sha256(summary_id.encode()).hexdigest()[:40]


def timestamp_for(window_start_ms: int, window_end_ms: int, now_ms: int,
                  limits: EngineLimits = STRIPE_LIMITS) -> int:
    """Unix seconds inside the window and the engine's limits (rule 6 of the docstring).

    A window too old for the engine is ``too_old_for_stripe`` or ``too_old_for_metronome``.
    """
    first_s = -(-window_start_ms // 1000)  # first whole second at or after the start
    last_s = -(-window_end_ms // 1000) - 1  # last whole second strictly before the end
    now_s = now_ms // 1000
    oldest_s = now_s - limits.max_past_s + limits.past_margin_s
    newest_s = now_s + limits.max_future_s - limits.future_margin_s
    engine = limits.name.capitalize()
    if last_s < first_s:
        raise PlanError("invalid_summary", "window holds no whole second")
    if last_s < oldest_s:
        raise PlanError(
            f"too_old_for_{limits.name}",
            f"window ends at {window_end_ms} ms, {engine} accepts timestamps from {oldest_s} s",
        )
    if first_s > newest_s:
        wait_s = float(first_s - newest_s)
        raise RetryableSinkError(
            f"window starts at {window_start_ms} ms, after {engine}'s future limit",
            retry_after_s=wait_s,
        )
    return max(first_s, oldest_s)


def plan_values(summary: Summary, meter: MeterSettings,
                max_digits: int | None = MAX_DIGITS) -> Sequence[tuple[str, Decimal]]:
    """(identifier, value) of each event that carries ``summary``, possibly none.

    Everything but the timestamp: rules 1 to 5 of the module docstring. It does not depend
    on the clock, so the sink computes it once per summary. ``max_digits`` None (an
    engine without a digit limit, Metronome) never splits: one event per summary.
    Raises :class:`PlanError`.
    """
    pre_aggregated = meter.stripe_window != "none"
    value = summary.total if pre_aggregated else summary.delta
    if value < 0:
        field = "total" if pre_aggregated else "delta"
        raise PlanError("negative_value", f"{field} {value} is negative")
    if value == 0 or (pre_aggregated and summary.seq > 0 and summary.delta == 0):
        return []
    if pre_aggregated:
        window_s = _WINDOW_S[meter.stripe_window]
        length_ms = summary.window_end_ms - summary.window_start_ms
        if length_ms != window_s * 1000 or summary.window_start_ms % (window_s * 1000):
            raise PlanError(
                "window_mismatch",
                f"window of {length_ms} ms at {summary.window_start_ms} is not a UTC "
                f"{meter.stripe_window}, the Stripe meter's pre-aggregation window",
            )
        if max_digits is not None and significant_digits(value) > max_digits:
            raise PlanError(
                "too_many_digits",
                f"total has {significant_digits(value)} significant digits (Stripe accepts "
                f"{MAX_DIGITS}) and a pre-aggregated meter cannot add parts",
            )
    if max_digits is None:  # the engine takes exact decimals of any length (Metronome)
        return PlannedValues(identifier_base(summary.id), 0, (canonical(value),))
    whole, tail = split_parts(value, max_digits)
    if whole > summary.event_count:
        raise PlanError(
            "invalid_summary",
            f"value {value} needs {whole} parts of {MAX_DIGITS} digits, more than the "
            f"{summary.event_count} events the summary counts could add up to",
        )
    return PlannedValues(identifier_base(summary.id), whole, tail)


def build_events(
    summary: Summary,
    meter: MeterSettings,
    stripe_customer_id: str,
    values: Sequence[tuple[str, Decimal]],
    now_ms: int,
    limits: EngineLimits = STRIPE_LIMITS,
) -> list[MeterEvent]:
    """The events for planned ``values`` with a timestamp valid at ``now_ms`` (rule 6)."""
    timestamp_s = timestamp_for(summary.window_start_ms, summary.window_end_ms, now_ms,
                                limits)
    return [
        MeterEvent(
            identifier=identifier,
            event_name=meter.stripe_event_name,
            stripe_customer_id=stripe_customer_id,
            value=value,
            timestamp_s=timestamp_s,
            customer=summary.customer,
            meter=summary.meter,
        )
        for identifier, value in values
    ]


def plan_events(
    summary: Summary, meter: MeterSettings, stripe_customer_id: str, now_ms: int,
    limits: EngineLimits = STRIPE_LIMITS,
) -> list[MeterEvent]:
    """The events that carry ``summary`` to Stripe at ``now_ms``, possibly none.

    Raises :class:`PlanError` for a summary that can never be sent and
    :class:`streams.errors.RetryableSinkError` for one that can be sent later.
    """
    values = plan_values(summary, meter, limits.max_digits)
    if not values:
        return []
    return build_events(summary, meter, stripe_customer_id, values, now_ms, limits)
