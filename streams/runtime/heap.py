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

A trim returns only whole free pages, and a page that one small live block shares with
freed buffers stays. So it first fixes glibc's mmap threshold (``mallopt``), which also
turns off its rise: every block of MMAP_THRESHOLD_BYTES or more is then mapped on its own
and unmapped when freed, and never leaves holes in the heap for small long-lived blocks to
pin. Measured with the scale benchmark's build, no restarts, RSS 20 s after it (10,000 ->
1,000,000 customers): glibc's rising threshold 114.3 -> 149.5 MiB (1.31x); fixed at 1 MiB
118 -> 128 MiB (1.08x), the build at 22,875 events/s against 23,085-26,496; fixed at
128 KiB 117 -> 121 MiB, but the build slowed to 14,842 events/s (every buffer of a few
hundred KiB mapped and faulted in anew).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Callable
from typing import Any

__all__ = ["TRIM_EVERY_S", "HeapTrimmer"]

log = logging.getLogger(__name__)

# Often enough that a drained backlog's buffers go back within a second; each trim costs a
# walk of the heap's free lists (a millisecond or two here), off the event loop.
TRIM_EVERY_S = 1.0
# glibc's M_MMAP_THRESHOLD parameter of mallopt (malloc.h), and the threshold it is set to.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _libc_function(libc: ctypes.CDLL | None, name: str, argtypes: list[Any]) -> Any:
    """The C library's function ``name`` returning int, or None where it is missing."""
    function = getattr(libc, name, None) if libc is not None else None
    if function is not None:
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return function


class HeapTrimmer:
    """Returns free heap memory to the system; a no-op where malloc_trim is missing.

    Made once a process, at start: it fixes the mmap threshold (module docstring).
    """

    def __init__(self, mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> None:
        libc = _glibc()
        self._trim: Callable[[int], int] | None = _libc_function(
            libc, "malloc_trim", [ctypes.c_size_t])
        mallopt = _libc_function(libc, "mallopt", [ctypes.c_int, ctypes.c_int])
        self.mmap_threshold_fixed = mallopt is not None and bool(
            mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
        if self._trim is None:
            log.info("not on glibc: freed heap memory is left to the C library")

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Give back what can be given; True when some memory was returned."""
        return self._trim is not None and bool(self._trim(0))
