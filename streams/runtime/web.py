"""The worker's HTTP API on Faust's web server.

- ``GET /customers/{id}/usage``: the current billing period per meter, spend, thresholds
  crossed and the last event time (``?period=YYYY-MM`` for another period). A worker that
  does not own the customer's partition forwards the request to the owner (the group's
  assignment tells every worker who owns what); a forwarded request is never forwarded
  again, so a stale map answers 503 instead of looping.
- ``GET /partitions``: which worker URL owns which partition, and what this worker owns.
- ``GET /health``: the process is up. ``GET /ready``: partitions assigned and restored, no
  rebalance under way; its body gives each owned partition's consumer lag and whether the
  worker has caught up (``caught_up``: every owned partition's lag known and within
  ``WORKER__CAUGHT_UP_MAX_LAG``).
- ``GET /metrics``: Prometheus text format.

When a token is configured every route but /health and /ready needs
``Authorization: Bearer <token>``; the comparison is constant-time.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.core.money import units_text
from streams.core.state import SpendRec, spend_key
from streams.core.windows import period_of
from streams.kafka.client import key_partition
from streams.runtime.app import Components

__all__ = ["FORWARDED_HEADER", "partition_of", "register_views", "usage_document"]

FORWARDED_HEADER = "X-Meterstream-Forwarded"
_FORWARD_TIMEOUT_S = 10.0


def partition_of(customer: str, partitions: int) -> int:
    """The events partition of ``customer``: Kafka's murmur2 of the key, as producers use."""
    return key_partition(customer.encode(), range(partitions))


def usage_document(raw: bytes | None, customer: str, period: str) -> dict[str, Any]:
    """The usage answer for one customer and period, from its spend record (or none)."""
    if raw is None:
        return {"customer": customer, "period": period, "meters": {}, "spend_minor": "0",
                "thresholds_crossed": [], "last_event_ms": None}
    rec = SpendRec.decode(raw)
    return {
        "customer": customer,
        "period": period,
        "meters": {m: units_text(v, rec.vscale)
                   for m, v in sorted(rec.totals_units().items())},
        "spend_minor": units_text(rec.spend, rec.scale),
        "thresholds_crossed": list(rec.fired),
        "last_event_ms": rec.last_event_ms or None,
    }


def register_views(c: Components) -> None:
    app, settings, plane = c.app, c.settings, c.plane
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
        ok = plane.ready
        lags = plane.lags()
        body = {"ready": ok, "partitions": sorted(plane.owned),
                "lag": {str(p): lag for p, lag in sorted(lags.items())},
                "caught_up": plane.caught_up()}
        return web.json(body, status=200 if ok else 503)

    @app.page("/partitions")
    async def routes(web: Any, request: Any) -> Any:
        if not authorized(request):
            return web.json({"error": "unauthorized"}, status=401)
        return web.json({"owned": sorted(plane.owned),
                         "owners": {str(p): url for p, url in
                                    sorted(plane.assignor.routes.items())}})

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        if not authorized(request):
            return web.json({"error": "unauthorized"}, status=401)
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/customers/{customer}/usage")
    async def usage(web: Any, request: Any, customer: str) -> Any:
        if not authorized(request):
            return web.json({"error": "unauthorized"}, status=401)
        period = request.query.get("period") or period_of(int(time.time() * 1000))
        p = partition_of(customer, plane.events_partitions)
        owned = plane.owned.get(p)
        if owned is None or owned.fenced or not plane.ready:
            return await _forward(web, request, p)
        raw = owned.state.view.get(spend_key(customer, period))
        doc = usage_document(raw, customer, period)
        doc["currency"] = currency
        return web.json(doc)

    async def _forward(web: Any, request: Any, p: int) -> Any:
        owner = plane.assignor.routes.get(p)
        me = settings.worker.effective_advertised_url
        if request.headers.get(FORWARDED_HEADER) or owner is None or owner == me:
            return web.json({"error": f"partition {p} is not served here right now; retry"},
                            status=503)
        headers = {FORWARDED_HEADER: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = f"{owner}{request.rel_url}"
        try:
            timeout = aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(url, headers=headers) as resp:
                body = await resp.read()
                return web.bytes(body, status=resp.status, content_type="application/json")
        except (aiohttp.ClientError, TimeoutError):
            return web.json({"error": f"the owner of partition {p} did not answer; retry"},
                            status=503)
