"""Prometheus observations of one committed batch (the instruments: streams.observability)."""

from __future__ import annotations

from streams.core.aggregate import BatchResult
from streams.observability import metrics

__all__ = ["observe_batch"]


def observe_batch(partition: int, result: BatchResult, *, now_s: float, grace_ms: int) -> None:
    metrics.STATE_WRITES.inc(len(result.writes))
    for outcome, n in result.outcomes.items():
        if outcome.startswith("invalid:"):
            reason = outcome.split(":", 1)[1]
            metrics.EVENTS.labels("invalid", reason).inc(n)
            metrics.DLQ.labels("events", reason).inc(n)
        elif outcome.startswith("summary:"):
            metrics.SUMMARIES.labels(outcome.split(":", 1)[1]).inc(n)
        else:
            metrics.EVENTS.labels(outcome, "").inc(n)
    for a in result.alerts:
        threshold = a["threshold"]
        assert isinstance(threshold, dict)
        metrics.ALERTS.labels(str(threshold["kind"])).inc()
    p = str(partition)
    if result.last_event_ms is not None:
        metrics.EVENT_TIME_LAG.labels(p).set(max(0.0, now_s - result.last_event_ms / 1000))
    if result.stream_ms:
        metrics.WATERMARK.labels(p).set((result.stream_ms - grace_ms) / 1000)
    metrics.OPEN_WINDOWS.labels(p).set(result.open_windows)
