"""Prometheus instruments of the Stripe sink. No customer or meter labels: cardinality
stays fixed whatever the number of customers; per-customer detail goes to logs."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SinkMetrics", "default_metrics"]


class SinkMetrics:
    """The sink's instruments, registered on ``registry`` (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.stripe_requests = Counter(
            "meterstream_stripe_requests_total",
            "Calls to Stripe's meter event API by outcome (ok, retryable, permanent, auth).",
            ["outcome"],
            registry=reg,
        )
        self.stripe_request_duration = Histogram(
            "meterstream_stripe_request_duration_seconds",
            "Duration of one call to Stripe's meter event API, seconds.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=reg,
        )
        self.summaries = Counter(
            "meterstream_sink_summaries_total",
            "Summaries finished by the sink, by outcome "
            "(sent, zero, duplicate, dead_lettered).",
            ["outcome"],
            registry=reg,
        )
        self.pending = Gauge(
            "meterstream_sink_pending_summaries",
            "Summaries read but not finished (queued, in flight, backing off or held).",
            registry=reg,
        )
        self.dlq = Counter(
            "meterstream_sink_dlq_total",
            "Summaries written to the summaries dead-letter topic, by reason.",
            ["reason"],
            registry=reg,
        )
        self.auth_failing = Gauge(
            "meterstream_sink_stripe_auth_failing",
            "1 while Stripe refuses the API key (401/403): the sink holds every summary "
            "and probes every METERSTREAM_STRIPE__AUTH_RETRY_S seconds.",
            registry=reg,
        )
        self.held = Gauge(
            "meterstream_sink_held_summaries",
            "Summaries waiting for their customer's Stripe customer id.",
            registry=reg,
        )


_default: SinkMetrics | None = None


def default_metrics() -> SinkMetrics:
    """The process-wide instruments on the default registry (created once)."""
    global _default
    if _default is None:
        _default = SinkMetrics()
    return _default
