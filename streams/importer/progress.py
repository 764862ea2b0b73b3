"""Import progress: a rich progress bar on a terminal, a log line every 10 s otherwise.

Shows rows, rows/s, bytes read of the bytes to read, files done and the ETA (by bytes).
"""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["ImportProgress"]

log = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0


class _RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:,} rows  {rate:,.0f} rows/s", style="progress.data.speed")


class ImportProgress:
    """Progress of one import run; ``update`` is cheap, call it every few thousand rows."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._console = Console(stderr=True)
        self._live = enabled and self._console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]import"), BarColumn(), DownloadColumn(), _RowsColumn(),
            TextColumn("{task.fields[files]}"), TimeRemainingColumn(),
            console=self._console, disable=not self._live, transient=False,
        )
        self._task: TaskID | None = None
        self.rows = 0
        self.bytes_done = 0  # bytes of finished files plus the current file's position
        self.files_done = 0
        self.files_total = 0
        self._bytes_total = 0
        self._started = time.monotonic()
        self._last_log = self._started

    def start(self) -> None:
        self._progress.start()
        self._task = self._progress.add_task("import", total=None, rows=0, files="")

    def add_work(self, files: int, size_bytes: int) -> None:
        """More files to import (a listing, or a watch poll that found new ones)."""
        self.files_total += files
        self._bytes_total += size_bytes
        self._refresh(0)

    def update(self, rows: int, file_position: int) -> None:
        self.rows = rows
        self._refresh(file_position)

    def file_done(self, size_bytes: int) -> None:
        self.files_done += 1
        self.bytes_done += size_bytes
        self._refresh(0)

    def _refresh(self, file_position: int) -> None:
        done = self.bytes_done + file_position
        files = f"{self.files_done}/{self.files_total} files"
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=self._bytes_total or None,
                                  rows=self.rows, files=files)
        now = time.monotonic()
        if not self._live and now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            elapsed = now - self._started
            log.info("import: %d rows (%.0f rows/s), %d of %d bytes, %s", self.rows,
                     self.rows / elapsed if elapsed else 0.0, done, self._bytes_total, files)

    def stop(self) -> None:
        self._progress.stop()
