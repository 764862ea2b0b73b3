"""``meterstream worker``: run the aggregator.

Local RocksDB state is a cache of the table's changelog. After a clean stop (SIGTERM,
SIGINT) the worker leaves a marker and the next start reuses the cache. Without the
marker (kill -9, OOM, power loss) the cache may hold writes whose changelog messages
never reached Kafka, in an order the changelog does not have; the worker then deletes it
and restores from the changelog alone, which is always a prefix of the writes
(docs/exactly-once.md).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from streams.config import Settings

__all__ = ["CLEAN_MARKER", "prepare_state_dir", "run_worker"]

log = logging.getLogger(__name__)

CLEAN_MARKER = "clean-shutdown"


def prepare_state_dir(state_dir: Path) -> bool:
    """Make ``state_dir`` safe to open; return True when the local cache was kept."""
    marker = state_dir / CLEAN_MARKER
    kept = True
    has_state = state_dir.exists() and any(p.name != CLEAN_MARKER for p in state_dir.iterdir())
    if has_state and not marker.exists():
        log.warning(
            "no clean-shutdown marker in %s: discarding local state, restoring from "
            "changelogs", state_dir)
        shutil.rmtree(state_dir)
        kept = False
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    return kept


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT; return the process exit code."""
    import faust

    from streams.runtime.app import build_app
    from streams.runtime.web import register_views

    state_dir = settings.worker.state_dir
    prepare_state_dir(state_dir)
    components = build_app(settings)
    register_views(components)
    from streams.logs import setup_logging

    class _Worker(faust.Worker):
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            # Faust configured logging its own way; ours (text or JSON) replaces it.
            setup_logging(settings.worker.log_level, settings.worker.log_format)

        async def on_stop(self) -> None:
            await super().on_stop()
            await components.gap_reader.close()

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
    if code == 0 and not worker.crash_reason:
        (state_dir / CLEAN_MARKER).touch()
        log.info("clean shutdown; local state kept for the next start")
    return code
