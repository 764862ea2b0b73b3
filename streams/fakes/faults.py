"""What the fake servers share about faults: the fault mix (:class:`Faults`), the decisions
drawn from a seeded RNG, the traffic statistics they expose, the down switch's modes, and
their clock."""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Clock",
    "DownMode",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "Faults",
    "ManualClock",
    "TrafficStats",
]

FaultKind = Literal["none", "429", "500", "timeout", "drop"]
DownMode = Literal["up", "503", "refuse"]
Clock = Callable[[], float]
"""Returns the fake's notion of now, in Unix seconds (float)."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection rates (each 0..1, their sum <= 1) and related knobs.

    rate_429, rate_500: answer with that status without touching the ledger.
    rate_timeout: hold the request for ``timeout_hold_s`` (longer than the client's
        timeout); with probability ``applied_probability`` the event is applied first.
    rate_drop: close the connection without an answer; applied with the same probability.
    latency_s: every meter-event request is held this long before it is processed (makes
        concurrency observable).
    retry_after_s: when set, 429 answers carry a ``Retry-After`` header with this value.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    timeout_hold_s: float = 30.0
    applied_probability: float = 0.5
    latency_s: float = 0.0
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_500, self.rate_timeout, self.rate_drop)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if not 0 <= self.applied_probability <= 1:
            raise ValueError("applied_probability must be in [0, 1]")
        if self.timeout_hold_s < 0 or self.latency_s < 0:
            raise ValueError("timeout_hold_s and latency_s must be >= 0")


class ManualClock:
    """A clock for tests: starts at ``start_s`` and moves only when told to."""

    def __init__(self, start_s: float) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What happens to one request. ``applied`` matters for timeout and drop only."""

    seq: int
    path: str
    kind: FaultKind
    applied: bool


class FaultInjector:
    """Draws one decision per meter-event request from a seeded RNG.

    Each decision takes exactly two draws (kind, then applied), so the sequence of
    decisions depends only on the seed, the rates and the order of requests.
    """

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._seq = 0
        self.log: list[FaultDecision] = []

    def set_faults(self, faults: Faults, seed: int | None = None) -> None:
        self.faults = faults
        if seed is not None:
            self._rng = random.Random(seed)

    def decide(self, path: str) -> FaultDecision:
        f = self.faults
        draw = self._rng.random()
        applied = self._rng.random() < f.applied_probability
        kind: FaultKind = "none"
        edge = 0.0
        for name, rate in (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("timeout", f.rate_timeout),
            ("drop", f.rate_drop),
        ):
            edge += rate
            if draw < edge:
                kind = name  # type: ignore[assignment]
                break
        if kind not in ("timeout", "drop"):
            applied = True
        decision = FaultDecision(self._seq, path, kind, applied)
        self._seq += 1
        self.log.append(decision)
        return decision


class TrafficStats:
    """Request rate, concurrency and outcome counters.

    ``max_rate_per_s`` is the most requests seen within any sliding 1 s window (wall
    clock, monotonic). ``max_pair_concurrency`` counts attempts: a request that arrives
    while another one of the same (customer, event name) is in flight makes it 2, even
    though the fake answers it with 429. ``idempotent_replays`` counts requests answered
    with the saved answer of an earlier request with the same Idempotency-Key (resends).
    """

    def __init__(self) -> None:
        self._arrivals: deque[float] = deque()
        self.max_rate_per_s = 0
        self.in_flight = 0
        self.max_concurrency = 0
        self.pair_in_flight: Counter[tuple[str, str]] = Counter()
        self.max_pair_concurrency = 0
        self.status_counts: Counter[int] = Counter()
        self.dropped_connections = 0
        self.inflight_rejections = 0
        self.idempotent_replays = 0
        self.requests = 0

    def arrive(self) -> None:
        now = time.monotonic()
        self.requests += 1
        self._arrivals.append(now)
        while self._arrivals and self._arrivals[0] <= now - 1.0:
            self._arrivals.popleft()
        self.max_rate_per_s = max(self.max_rate_per_s, len(self._arrivals))
        self.in_flight += 1
        self.max_concurrency = max(self.max_concurrency, self.in_flight)

    def leave(self, status: int | None) -> None:
        self.in_flight -= 1
        if status is None:
            self.dropped_connections += 1
        else:
            self.status_counts[status] += 1

    def pair_enter(self, pair: tuple[str, str]) -> bool:
        """Mark ``pair`` in flight; False (and nothing marked) if it already was."""
        attempted = self.pair_in_flight[pair] + 1
        self.max_pair_concurrency = max(self.max_pair_concurrency, attempted)
        if attempted > 1:
            self.inflight_rejections += 1
            return False
        self.pair_in_flight[pair] = 1
        return True

    def pair_leave(self, pair: tuple[str, str]) -> None:
        del self.pair_in_flight[pair]

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "max_rate_per_s": self.max_rate_per_s,
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
            "max_pair_concurrency": self.max_pair_concurrency,
            "inflight_rejections": self.inflight_rejections,
            "idempotent_replays": self.idempotent_replays,
            "dropped_connections": self.dropped_connections,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
        }
