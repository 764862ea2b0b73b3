"""Deterministic ids and the wire dicts of meter summaries and alerts.

An id is a function of what the message stands for, never of when it was made, so a
replay after a crash re-emits the same ids and consumers (the Stripe sink, alert
consumers) dedup by id.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Final

from streams.core.money import format_decimal

__all__ = ["alert_dict", "alert_id", "summary_dict", "summary_id"]

_SEP: Final = "\x1f"
_sha256: Final = hashlib.sha256


def summary_id(customer: str, meter: str, window_start_ms: int, seq: int) -> str:
    """Id of summary ``seq`` of one (customer, meter, window); see docs/contracts.md."""
    raw = f"{customer}{_SEP}{meter}{_SEP}{window_start_ms}{_SEP}{seq}"
    return "ms1_" + _sha256(raw.encode()).hexdigest()[:40]


def alert_id(customer: str, period: str, threshold_id: str) -> str:
    """Id of the one alert for (customer, period, threshold); versioned by its prefix."""
    raw = _SEP.join((customer, period, threshold_id))
    return "al1_" + _sha256(raw.encode()).hexdigest()[:40]


def summary_dict(
    *,
    customer: str,
    meter: str,
    aggregation: str,
    window_start_ms: int,
    window_ms: int,
    seq: int,
    total: Decimal | str,
    delta: Decimal | str,
    event_count: int,
    period: str,
    emitted_at_ms: int,
) -> dict[str, object]:
    """A meter summary v1 (schemas/meter_summary.v1.json).

    ``total`` and ``delta`` are Decimals, or already in wire form (``format_decimal``).
    """
    return {
        "schema": "meter_summary.v1",
        "id": summary_id(customer, meter, window_start_ms, seq),
        "customer": customer,
        "meter": meter,
        "aggregation": aggregation,
        "window_start_ms": window_start_ms,
        "window_end_ms": window_start_ms + window_ms,
        "seq": seq,
        "kind": "final" if seq == 0 else "correction",
        "total": total if isinstance(total, str) else format_decimal(total),
        "delta": delta if isinstance(delta, str) else format_decimal(delta),
        "event_count": event_count,
        "period": period,
        "emitted_at_ms": emitted_at_ms,
    }


def alert_dict(
    *,
    customer: str,
    period: str,
    threshold_id: str,
    kind: str,
    amount_minor: Decimal,
    percent: Decimal | None,
    currency: str,
    spend_minor: Decimal,
    crossed_at_event_ms: int,
    event_id: str,
    emitted_at_ms: int,
) -> dict[str, object]:
    """An alert v1 (schemas/alert.v1.json)."""
    return {
        "schema": "alert.v1",
        "id": alert_id(customer, period, threshold_id),
        "customer": customer,
        "period": period,
        "threshold": {
            "id": threshold_id,
            "kind": kind,
            "amount_minor": format_decimal(amount_minor),
            "percent": None if percent is None else format_decimal(percent),
        },
        "currency": currency,
        "spend_minor": format_decimal(spend_minor),
        "crossed_at_event_ms": crossed_at_event_ms,
        "event_id": event_id,
        "emitted_at_ms": emitted_at_ms,
    }
