"""``meterstream worker``: run the aggregator.

Local RocksDB state holds committed data only and records the changelog offset it reflects
(streams.runtime.local_state), so it is kept across every kind of stop, kill -9 included:
the next start restores only the changelog tail (docs/exactly-once.md).
"""

from __future__ import annotations

import logging

from streams.config import Settings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT; return the process exit code."""
    import faust

    from streams.observability.logs import RetriedErrorsAreWarnings, setup_logging
    from streams.runtime.app import build_app
    from streams.runtime.web import register_views

    settings.worker.state_dir.mkdir(parents=True, exist_ok=True)
    components = build_app(settings)
    register_views(components)

    class _Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            # Until our own logging replaces Faust's (below), its handlers get our filter.
            for handler in logger.handlers:
                handler.addFilter(RetriedErrorsAreWarnings())

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            # Faust configured logging its own way; ours (text or JSON) replaces it.
            setup_logging(settings.worker.log_level, settings.worker.log_format)

    worker = _Worker(
        components.app,
        loglevel=settings.worker.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    code = 1
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code
