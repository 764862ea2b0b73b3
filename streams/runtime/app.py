"""The worker as a Faust application: lifecycle, web server and timers around the data plane.

faust-streaming is the application framework here, not the per-event path (measured: its
stream delivers one message at a time through several tasks and queues, and its own floor
was 0.38x Quix Streams before any work was done; docs/architecture.md). The app runs with
Faust's Kafka consumer, producer and tables switched off (:class:`_Boot`), and gives the
worker:

- the worker lifecycle: signals, start-up and an orderly shutdown that stops the data plane
  (a ``mode.Service``) after the round in progress;
- the web server, for the usage API, ``/health``, ``/ready`` and ``/metrics``
  (:mod:`streams.runtime.web`);
- timers: ticks into idle partitions, the state size sample, and the heap trim (heap.py).

The data plane (:mod:`streams.runtime.dataplane`) owns the group membership, the
transactions and the state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import faust
from faust.app.base import BootStrategy
from mode import Service

from streams.config import Settings, effective_max_age_ms
from streams.core.aggregate import Aggregator, CoreConfig
from streams.core.pricing import MeterRule
from streams.runtime.dataplane import DataPlane
from streams.runtime.heap import TRIM_EVERY_S, HeapTrimmer
from streams.runtime.state_size import SAMPLE_EVERY_S, directory_size_bytes

__all__ = ["Components", "build_app", "core_config"]

log = logging.getLogger(__name__)


# A batch with no events to process (a sweep, or ticks only) closes this many times
# AGGREGATOR__BATCH_MAX_CLOSES window records: 2,000 by default, about 30 ms of work, so that
# a partition that goes quiet for a moment does not hold up a round for long.
IDLE_CLOSES_FACTOR = 8


def core_config(settings: Settings) -> CoreConfig:
    """The core's view of the settings: ms and exact Decimals."""
    a = settings.aggregator
    return CoreConfig(
        meters={m.name: MeterRule(m.name, m.aggregation, m.unit_price_minor,
                                  pre_aggregated=(settings.sink.engine == "stripe"
                                                  and m.stripe_window != "none"))
                for m in settings.meters},
        window_ms=a.window_s * 1000,
        grace_ms=a.grace_s * 1000,
        dedup_horizon_ms=a.dedup_horizon_s * 1000,
        idle_bound_ms=a.idle_close_after_s * 1000,
        max_future_ms=a.max_future_s * 1000,
        max_age_ms=effective_max_age_ms(settings),
        default_thresholds=a.thresholds_minor,
        currency=a.currency,
        batch_max_closes=a.batch_max_closes,
        idle_max_closes=IDLE_CLOSES_FACTOR * a.batch_max_closes,
    )


class _Boot(BootStrategy):
    """Faust without Kafka: sensors, web server and the app's own services and timers."""

    enable_kafka = False


class _App(faust.App):
    BootStrategy = _Boot


@dataclass
class Components:
    """What build_app wired, for the worker entry point, the web views and tests."""

    app: faust.App
    plane: DataPlane
    settings: Settings


def build_app(settings: Settings) -> Components:
    """Build the Faust app for ``settings``. Nothing connects until the worker starts."""
    w, a = settings.worker, settings.aggregator
    app = _App(
        w.app_id,
        # Faust's Kafka clients are off (_Boot); the broker setting only satisfies its config.
        broker=[f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")],
        datadir=str(w.state_dir / "faust"),
        web_enabled=True,
        web_bind=w.web_host,
        web_host=w.web_host,
        web_port=w.web_port,
        # Faust's /table/ views would list tables to anyone, past the API token.
        web_tables_enabled=False,
    )
    plane = DataPlane(settings, Aggregator(core_config(settings)))

    @app.service
    class DataPlaneService(Service):
        """Starts the data plane with the app and stops it, after its round, with the app."""

        async def on_start(self) -> None:
            await plane.start()

        async def on_stop(self) -> None:
            await plane.stop()

    tick_every_s = max(0.2, a.idle_close_after_s / 4)

    @app.timer(tick_every_s)  # type: ignore[untyped-decorator]
    async def tick_idle_partitions() -> None:
        try:
            await plane.tick()
        except Exception as exc:  # a tick is retried on the next timer; the broker may be down
            log.warning("tick failed: %r", exc)

    trimmer = HeapTrimmer()

    @app.timer(TRIM_EVERY_S)  # type: ignore[untyped-decorator]
    async def trim_heap() -> None:
        await asyncio.to_thread(trimmer.trim)

    @app.timer(SAMPLE_EVERY_S)  # type: ignore[untyped-decorator]
    async def sample_state_size() -> None:
        from streams.observability import metrics

        size = await asyncio.to_thread(directory_size_bytes, w.state_dir)
        metrics.ROCKSDB_SIZE.set(size)
        for kind, value in plane.rocksdb_memory().items():
            metrics.ROCKSDB_MEMORY.labels(kind).set(value)
        plane.caught_up()

    return Components(app, plane, settings)

