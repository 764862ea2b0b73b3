"""The demo load: a steady stream of usage events from a Zipf mix of customers.

Event time is chosen so that the demo's last window closes right after the load stops.
A window closes once the partition's watermark (stream time minus grace) passes its end,
and after the load the watermark follows the wall clock (idle ticks). So the load's event
time *ends on a window boundary* B: the load runs over wall time [t0, S] and its event
time is the linear map of [t0, S] onto [t0, B), with B the last boundary at or before S
(or the next one, when that would leave under ``min_span_ms`` of event time; then the
load runs until B). Event time then never runs ahead of the wall clock and never goes
backwards, so no event is late and the last window closes at B + grace + idle bound.

Values and prices are set so the busiest customers cross the default $100 threshold
within the first half minute at the default 200 events/s.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from streams.config import Settings
from streams.core.money import EXACT

__all__ = ["DemoLoad", "LoadPlan", "demo_customers", "plan_load"]

# (meter, weight, max value in thousandths); "executions" is a count meter (value 1).
_MIX: tuple[tuple[str, float, int], ...] = (
    ("cpu_seconds", 0.4, 600_000),
    ("gpu_seconds", 0.2, 3_000_000),
    ("memory_gb_seconds", 0.3, 20_000_000),
    ("executions", 0.1, 1_000),
)
_TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Wall-clock start and stop of the load, and the boundary its event time ends on."""

    start_ms: int
    stop_ms: int
    boundary_ms: int

    def event_time_ms(self, wall_ms: int) -> int:
        """The event time of an event sent at ``wall_ms`` (in [start, stop))."""
        span = self.stop_ms - self.start_ms
        done = min(max(wall_ms - self.start_ms, 0), span - 1)
        return self.start_ms + done * (self.boundary_ms - self.start_ms) // span


def plan_load(now_ms: int, target_s: float, window_ms: int,
              min_span_ms: int = 5_000) -> LoadPlan:
    """A load of about ``target_s`` from ``now_ms`` whose event time ends on a boundary."""
    stop = now_ms + int(target_s * 1000)
    boundary = stop - stop % window_ms
    if boundary < now_ms + min_span_ms:
        boundary += window_ms
        stop = boundary
    return LoadPlan(now_ms, stop, boundary)


def demo_customers(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"demo-{i:0{width}d}" for i in range(1, n + 1)]


@dataclass
class DemoLoad:
    """Produces the load and keeps its ground truth: per (customer, meter) totals and
    per-customer spend in minor units, exact."""

    settings: Settings
    customers: list[str]
    rate_per_s: float
    zipf_s: float = 1.1
    seed: int = 1
    totals: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    spend_minor: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    sent: int = 0
    periods: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        acc = 0.0
        self._cum: list[float] = []
        for k in range(1, len(self.customers) + 1):
            acc += 1.0 / k ** self.zipf_s
            self._cum.append(acc)
        prices = {m.name: m.unit_price_minor for m in self.settings.meters}
        self._mix = [(m, w, vmax, prices[m]) for m, w, vmax in _MIX if m in prices]
        if not self._mix:
            raise ValueError("the demo load needs at least one of the default meters")
        self._run = uuid.uuid4().hex[:8]

    def _event(self, event_ms: int) -> tuple[bytes, bytes]:
        rng = self._rng
        i = bisect.bisect_left(self._cum, rng.random() * self._cum[-1])
        customer = self.customers[min(i, len(self.customers) - 1)]
        total_w = sum(w for _, w, _, _ in self._mix)
        pick = rng.random() * total_w
        meter, _w, vmax, price = self._mix[-1]
        for candidate in self._mix:
            pick -= candidate[1]
            if pick <= 0:
                meter, _w, vmax, price = candidate
                break
        if meter == "executions":
            value = Decimal(1)
        else:
            value = EXACT.divide(Decimal(rng.randint(1, vmax)), Decimal(1000))
        self.totals[(customer, meter)] = EXACT.add(self.totals[(customer, meter)], value)
        self.spend_minor[customer] = EXACT.add(self.spend_minor[customer],
                                               EXACT.multiply(value, price))
        body = {"id": f"demo-{self._run}-{self.sent}", "customer": customer, "meter": meter,
                "value": str(value), "timestamp": event_ms}
        self.sent += 1
        return customer.encode(), orjson.dumps(body)

    async def run(self, producer: Any, plan: LoadPlan,
                  on_tick: Callable[[], None] | None = None) -> None:
        """Send events at ``rate_per_s`` until ``plan.stop_ms``; every send is acked on
        return. The wall clock is read once per tick; events of a tick share a time."""
        from streams.core.windows import period_of

        topic = self.settings.topics.events
        began = time.monotonic()
        pending: list[asyncio.Future[Any]] = []
        while True:
            now_ms = int(time.time() * 1000)
            if now_ms >= plan.stop_ms:
                break
            due = int((time.monotonic() - began) * self.rate_per_s)
            event_ms = plan.event_time_ms(now_ms)
            self.periods.add(period_of(event_ms))
            while self.sent < due:
                key, value = self._event(event_ms)
                pending.append(await producer.send(topic, key=key, value=value))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if on_tick is not None:
                on_tick()
            await asyncio.sleep(_TICK_S)
        await asyncio.gather(*pending)
