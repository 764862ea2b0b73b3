"""Event-time arithmetic: tumbling windows, billing periods, hours. All times are epoch ms, UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["HOUR_MS", "period_bounds_ms", "period_of", "window_start"]

HOUR_MS = 3_600_000


def window_start(ts_ms: int, window_ms: int) -> int:
    """Start of the UTC-aligned tumbling window holding ``ts_ms``.

    Windows are aligned to the Unix epoch, which is UTC midnight, so any window size that
    divides a day gives windows aligned to UTC hours and days (as Stripe's are).
    """
    return ts_ms - ts_ms % window_ms


def period_of(ts_ms: int) -> str:
    """The calendar-month billing period (UTC) holding ``ts_ms``, as ``YYYY-MM``."""
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"{d.year:04d}-{d.month:02d}"


def period_bounds_ms(period: str) -> tuple[int, int]:
    """``[start, end)`` of a ``YYYY-MM`` period in epoch ms (UTC)."""
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000
