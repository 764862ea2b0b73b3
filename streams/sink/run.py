"""Entry points for ``meterstream sink`` and ``meterstream reconcile --period YYYY-MM``."""

from __future__ import annotations

import asyncio
import logging
import signal

from streams.config import Settings
from streams.sink.engines import make_client
from streams.sink.reconcile import reconcile
from streams.sink.sink import StripeSink

__all__ = ["run_reconcile", "run_sink"]

log = logging.getLogger(__name__)


async def run_sink(settings: Settings, *, metrics_port: int | None = None) -> None:
    """Run the Stripe sink until SIGTERM or SIGINT, then shut down gracefully.

    ``metrics_port``: serve Prometheus metrics on that port (None: the caller exposes the
    default registry itself).
    """
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.worker.web_host)
    client = make_client(settings)
    sink = StripeSink(settings, client)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, sink.stop)
    engine = sink.engine
    mode = f" mode={settings.stripe.mode}" if engine.name == "stripe" else ""
    log.info("starting the %s sink:%s rate=%.0f/s concurrency=%d", engine.name, mode,
             engine.rate_limit_per_s, engine.max_concurrency)
    try:
        await sink.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await client.aclose()


async def run_reconcile(settings: Settings, period: str) -> int:
    """Print every (customer, meter) whose ``period`` total differs from Stripe's; the
    process exit code: 0 when all match, 1 otherwise."""
    result = await reconcile(settings, period)
    return result.exit_code
