"""The import checkpoint: which files are done, and how far into the others we got.

A JSON file, replaced atomically (write a sibling temp file, fsync, rename, fsync the
directory), so a crash leaves the old or the new version, never a torn one::

    {"version": 1,
     "done":    {"<content digest>": {"file": "s3://b/k.csv", "last_row": 1001, "at_ms": ...}},
     "partial": {"<content digest>": 52000},
     "digests": {"<uri>|<size>|<mtime_ns or ETag>": "<content digest>"}}

- ``done``: files imported to the end; a later run skips them (also under another name:
  the key is the content digest, see :mod:`streams.importer.sources`).
- ``partial``: the last row number of a file whose rows up to it (and every reject among
  them) the producer has acknowledged. A resumed run skips rows up to it.
- ``digests``: a cache, so that re-listing does not re-hash unchanged files.

The importer writes it only after ``flush()`` returned (see :mod:`streams.importer.run`);
the rows after the last save are read and sent again after a crash, with the same ids.
One importer per checkpoint: :meth:`Checkpoint.lock` takes an exclusive ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from streams.errors import ImportSourceError

__all__ = ["Checkpoint"]

_VERSION = 1


@dataclass
class Checkpoint:
    """In-memory checkpoint; ``path`` None keeps it in memory only (no resume)."""

    path: Path | None = None
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    partial: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    _lock_file: TextIO | None = None

    @classmethod
    def load(cls, path: Path | None) -> Checkpoint:
        if path is None or not path.exists():
            return cls(path)
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ImportSourceError(f"checkpoint {path} is unreadable: {exc}") from exc
        if type(doc) is not dict or doc.get("version") != _VERSION:
            raise ImportSourceError(f"checkpoint {path}: not a version {_VERSION} checkpoint")
        return cls(path, dict(doc.get("done", {})), dict(doc.get("partial", {})),
                   dict(doc.get("digests", {})))

    def lock(self) -> None:
        """Hold an exclusive lock on ``<path>.lock`` until :meth:`unlock`; fail if taken."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path.with_name(self.path.name + ".lock"), "w")  # noqa: SIM115
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ImportSourceError(
                f"checkpoint {self.path} is in use by another import") from None
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def resume_after(self, digest: str) -> int:
        """Rows of the file up to this number are already acknowledged (0: none)."""
        return self.partial.get(digest, 0)

    def advance(self, digest: str, number: int) -> None:
        self.partial[digest] = number

    def finish(self, digest: str, uri: str, last_row: int) -> None:
        self.partial.pop(digest, None)
        self.done[digest] = {"file": uri, "last_row": last_row,
                             "at_ms": time.time_ns() // 1_000_000}

    def save(self) -> None:
        """Replace the file atomically (no-op without a path)."""
        if self.path is None:
            return
        doc = {"version": _VERSION, "done": self.done, "partial": self.partial,
               "digests": self.digests}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):  # not every filesystem lets a directory fsync
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
