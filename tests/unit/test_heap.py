"""The worker's heap trim gives freed heap memory back to the system (glibc)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from streams.runtime import heap
from streams.runtime.heap import HeapTrimmer


def _rss_anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_freed_heap_memory() -> None:
    trimmer = HeapTrimmer()
    assert trimmer.available
    trimmer.trim()
    # 96 MiB in 2 KiB blocks (above pymalloc's 512-byte limit, below the mmap threshold):
    # glibc serves them from its heap. A block allocated after them pins the heap's top,
    # so freeing them returns nothing until a trim.
    blocks = [bytearray(2048) for _ in range(48 * 1024)]
    pin = bytearray(2048)
    del blocks
    held = _rss_anon_bytes()
    assert trimmer.trim()
    assert held - _rss_anon_bytes() > 64 * 2**20
    del pin


def test_no_trim_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("", ""))
    trimmer = HeapTrimmer()
    assert not trimmer.available
    assert trimmer.trim() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_blocks_go_back_when_freed_without_a_trim() -> None:
    trimmer = HeapTrimmer()
    assert trimmer.mmap_threshold_fixed
    threshold = heap.MMAP_THRESHOLD_BYTES
    # A large block freed: glibc's default would raise its mmap threshold to this size,
    # serve the blocks below from the heap, and keep them there once freed, held by the
    # small live blocks between them (0 bytes returned without the fixed threshold).
    big = bytearray(8 * threshold)
    del big
    pairs = [(bytearray(2 * threshold), bytearray(4096)) for _ in range(48)]
    pins = [pin for _block, pin in pairs]
    held = _rss_anon_bytes()
    del pairs
    returned = held - _rss_anon_bytes()
    assert returned > 64 * 2**20  # at once, no trim: each large block was mapped alone
    assert len(pins) == 48
