"""The size on disk of the worker's state directory, for the RocksDB size gauge."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SAMPLE_EVERY_S", "directory_size_bytes"]

SAMPLE_EVERY_S = 15.0


def directory_size_bytes(root: Path) -> int:
    """Sum of the sizes of the regular files under ``root`` (0 when it does not exist).

    RocksDB deletes SST files during compaction while this walks, so a file that vanished
    between listing and stat is skipped rather than failing the sample.
    """
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += st.st_size
    return total
