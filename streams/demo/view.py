"""What the demo shows: its state, a rich renderable for the live view, and the plain
one-line status printed instead when there is no terminal."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from streams.core.money import EXACT

__all__ = ["DemoState", "dollars", "render", "status_line"]


def dollars(minor: Decimal) -> str:
    """Minor units (cents) as dollars with cents, e.g. ``Decimal("12345.6")`` -> "123.46"."""
    return f"{EXACT.divide(minor, Decimal(100)):,.2f}"


@dataclass
class DemoState:
    """Updated by the demo's tasks, read by the renderers."""

    duration_s: float
    phase: str = "starting"
    mode: str = "fake Stripe"
    started: float = field(default_factory=time.monotonic)
    events_sent: int = 0
    summaries_seen: int = 0
    summary_messages: int = 0
    sink_finished: float = 0.0
    sink_sent: float = 0.0
    sink_pending: float = 0.0
    stripe_calls: dict[str, float] = field(default_factory=dict)
    spend_minor: dict[str, Decimal] = field(default_factory=dict)
    alerts: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    alert_count: int = 0
    _rate_points: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=200))

    def sample_rate(self) -> None:
        self._rate_points.append((time.monotonic(), self.events_sent))

    @property
    def events_per_s(self) -> float:
        """Events per second over the last ~5 s."""
        now = time.monotonic()
        points = [p for p in self._rate_points if now - p[0] <= 5.0]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return 0.0
        return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def stripe_total(self) -> int:
        return int(sum(self.stripe_calls.values()))


def _top(state: DemoState, n: int) -> list[tuple[str, Decimal]]:
    return sorted(state.spend_minor.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def render(state: DemoState) -> RenderableType:
    """The live view: status, top customers by spend, recent alerts."""
    stats = Table.grid(padding=(0, 2))
    stats.add_row("phase", f"[bold]{state.phase}[/]", "billing", state.mode)
    stats.add_row("elapsed", f"{state.elapsed_s:.0f}s / {state.duration_s:.0f}s",
                  "events sent", f"{state.events_sent:,}")
    stats.add_row("events/s", f"{state.events_per_s:,.0f}",
                  "summaries emitted", f"{state.summaries_seen:,}")
    calls = ", ".join(f"{k} {int(v):,}" for k, v in sorted(state.stripe_calls.items()))
    stats.add_row("summaries pushed", f"{int(state.sink_sent):,}",
                  "engine calls", f"{state.stripe_total:,}" + (f" ({calls})" if calls else ""))
    top = Table(title="top customers by spend (usage API)", expand=True)
    top.add_column("customer")
    top.add_column("spend USD", justify="right")
    top.add_column("over $100", justify="center")
    for customer, spend in _top(state, 10):
        top.add_row(customer, dollars(spend), "yes" if spend >= 10_000 else "")
    alerts = "\n".join(state.alerts) or "(none yet)"
    return Group(
        Panel(stats, title="meterstream demo"),
        top,
        Panel(alerts, title=f"alerts ({state.alert_count})"),
    )


def status_line(state: DemoState) -> str:
    """One plain line for logs and CI."""
    top = ", ".join(f"{c} ${dollars(s)}" for c, s in _top(state, 3)) or "-"
    return (f"[{state.elapsed_s:5.0f}s] {state.phase}: events {state.events_sent} "
            f"({state.events_per_s:.0f}/s), summaries emitted {state.summaries_seen}, "
            f"summaries pushed {int(state.sink_sent)}, engine calls {state.stripe_total}, "
            f"alerts {state.alert_count}; top {top}")

