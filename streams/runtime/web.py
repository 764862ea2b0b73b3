"""The worker's HTTP API on Faust's web server.

- ``GET /customers/{id}/usage``: the current billing period per meter, spend, thresholds
  crossed and the last event time. Faust's table router forwards the request to the
  worker that owns the customer's partition.
- ``GET /health``: the process is up. ``GET /ready``: the first table recovery has
  finished and no rebalance or recovery is under way.
- ``GET /metrics``: Prometheus text format.

When a token is configured every route but /health and /ready needs
``Authorization: Bearer <token>``; the comparison is constant-time.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.core.money import format_decimal
from streams.core.state import SpendRec, spend_key
from streams.core.windows import period_of
from streams.runtime.app import Components

__all__ = ["register_views", "usage_document"]


def usage_document(raw: bytes | None, customer: str, period: str) -> dict[str, Any]:
    """The usage answer for one customer and period, from its spend record (or none)."""
    if raw is None:
        return {"customer": customer, "period": period, "meters": {}, "spend_minor": "0",
                "thresholds_crossed": [], "last_event_ms": None}
    rec = SpendRec.decode(raw)
    return {
        "customer": customer,
        "period": period,
        "meters": {m: format_decimal(v) for m, v in sorted(rec.totals.items())},
        "spend_minor": format_decimal(rec.spend_minor),
        "thresholds_crossed": list(rec.fired),
        "last_event_ms": rec.last_event_ms or None,
    }


def register_views(c: Components) -> None:
    app, settings = c.app, c.settings
    token = settings.worker.api_token
    currency = settings.aggregator.currency

    def authorized(request: Any) -> bool:
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        return hmac.compare_digest(header.encode(), expected.encode())

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        # Ready once the first recovery has finished (tables restored, streams seeked)
        # and no rebalance or later recovery is under way.
        recovery = getattr(app.tables, "recovery", None)
        ok = bool(
            app.started
            and recovery is not None
            and recovery.completed.is_set()
            and not recovery.in_recovery
            and not app.rebalancing
        )
        return web.json({"ready": ok}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        if not authorized(request):
            return web.json({"error": "unauthorized"}, status=401)
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/customers/{customer}/usage")
    @app.table_route(table=c.state, match_info="customer")
    async def usage(web: Any, request: Any, customer: str) -> Any:
        if not authorized(request):
            return web.json({"error": "unauthorized"}, status=401)
        period = request.query.get("period") or period_of(int(time.time() * 1000))
        raw = c.state.data.get(spend_key(customer, period).encode())
        doc = usage_document(raw, customer, period)
        doc["currency"] = currency
        return web.json(doc)
