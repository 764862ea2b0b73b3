"""Pure domain of meterstream: exact money, the event contract, windows and aggregation.

The modules in :data:`COMPILED` are compiled to C with mypyc when the package is built
(setup.py; docs/architecture.md, "The compiled core"). They are the same source either
way. This package uses their Python source instead of the compiled modules:

- when ``METERSTREAM_PURE_PYTHON=1`` is set (for a profiler that reads Python frames, or
  to compare the two);
- when the compiled modules were built from other sources than the ones beside them (an
  edit since the last build; ``scripts/bootstrap.sh`` rebuilds), with one warning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "compiled"]

COMPILED = ("aggregate", "batch", "billable", "cache", "horizons", "money", "pricing",
            "scan", "state", "summaries", "windows")
"""The modules setup.py compiles (it reads this tuple): the per-event path, which mypyc
compiles as it is written. (Not events.py, whose ``object.__new__`` a compiled module
cannot do, and not wire.py, a msgspec struct that mypyc cannot compile.)"""

_HERE = Path(__file__).resolve().parent
_STAMP = _HERE / "compiled_from.txt"


def _built() -> bool:
    """Whether compiled modules sit beside the sources."""
    return any((_HERE / f"{COMPILED[0]}{suffix}").exists() for suffix in EXTENSION_SUFFIXES)


def _stale_reason() -> str | None:
    """Why the compiled modules must not be used (None: they are current)."""
    try:
        stamp = dict(line.split() for line in _STAMP.read_text().splitlines() if line)
    except (OSError, ValueError):
        return "they have no record of the sources they were built from"
    for name in COMPILED:
        try:
            digest = hashlib.sha256((_HERE / f"{name}.py").read_bytes()).hexdigest()
        except OSError:  # installed without its source: the compiled module is all there is
            continue
        if stamp.get(name) != digest:
            return f"streams/core/{name}.py changed since they were built"
    return None


class _SourceFinder:
    """Finds the compiled modules' Python source ahead of the compiled files."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def _choose() -> bool:
    if not _built():
        return False
    if os.environ.get("METERSTREAM_PURE_PYTHON") != "1":
        reason = _stale_reason()
        if reason is None:
            return True
        logging.getLogger(__name__).warning(
            "the compiled core is not used: %s; it runs from its Python source, slower "
            "(scripts/bootstrap.sh or `pip install -e .` compiles it again)", reason)
    sys.meta_path.insert(0, _SourceFinder())
    return False


_compiled = _choose()


def compiled() -> bool:
    """Whether the core runs compiled (False: from its Python source)."""
    return _compiled
