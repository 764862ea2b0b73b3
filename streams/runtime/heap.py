"""Giving the memory the worker freed back to the system (glibc's ``malloc_trim``).

A worker that drains a backlog allocates and frees large buffers: fetch responses, record
batches, the core's per-batch structures. glibc's malloc keeps what is freed in its heap
for reuse instead of returning it, and its mmap threshold rises after each large free, so
later buffers land in the heap too. The resident size then follows the largest backlog the
worker ever drained, not its state or its load. Measured with the scale benchmark (state
of 1,000,000 customers, RocksDB budget 64 MiB): 294 MiB resident after the build without
a trim, 143 MiB with one; docs/architecture.md has the table.

:class:`HeapTrimmer` calls ``malloc_trim(0)``, which returns every free page of every
arena, in a thread (ctypes releases the GIL; glibc locks its arenas), on a timer of the
app (:mod:`streams.runtime.app`). On a C library other than glibc (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Callable

__all__ = ["TRIM_EVERY_S", "HeapTrimmer"]

log = logging.getLogger(__name__)

# Often enough that a drained backlog's buffers go back within a second; each trim costs a
# walk of the heap's free lists (a millisecond or two here), off the event loop.
TRIM_EVERY_S = 1.0


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Returns free heap memory to the system; a no-op where malloc_trim is missing."""

    def __init__(self) -> None:
        self._trim = _glibc_malloc_trim()
        if self._trim is None:
            log.info("not on glibc: freed heap memory is left to the C library")

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Give back what can be given; True when some memory was returned."""
        return self._trim is not None and bool(self._trim(0))
