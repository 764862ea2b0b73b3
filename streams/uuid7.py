"""UUID version 7 (RFC 9562, section 5.7) from the standard library.

Layout (128 bits, big-endian)::

    unix_ts_ms (48) | ver=0b0111 (4) | rand_a (12) | var=0b10 (2) | rand_b (62)

``rand_a`` is used as a 12-bit counter (RFC 9562 section 6.2, method 1, "fixed-length
dedicated counter"): the first id of a millisecond seeds it with a random value below
2048, later ids of the same millisecond increment it. When it would overflow, or when
the wall clock steps back, the timestamp field is advanced past the last one used, so
ids made by one process are strictly increasing, both as integers and as their
canonical lowercase strings. ``rand_b`` is 62 bits from ``os.urandom``, drawn in blocks
of 32 KiB to save system calls.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["uuid7", "uuid7_str", "uuid7_timestamp_ms"]

_POOL_HEX = 16 * 4096  # hex digits of randomness fetched per os.urandom call


class _Generator:
    """Strictly increasing UUIDv7 values; thread-safe."""

    __slots__ = ("_last_ms", "_lock", "_pool", "_pool_pos", "_prefix", "_seq")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0
        self._prefix = ""
        self._pool = ""
        self._pool_pos = _POOL_HEX

    def next_str(self, now_ms: int | None = None) -> str:
        """The next id in canonical form."""
        with self._lock:
            ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
            if ms > self._last_ms:
                self._start_ms(ms)
            else:
                self._seq += 1
                if self._seq > 0xFFF:
                    # Counter exhausted, or the clock went back: borrow the next
                    # millisecond so ordering holds.
                    self._start_ms(self._last_ms + 1)
            pos = self._pool_pos
            if pos + 16 > _POOL_HEX:
                self._pool = os.urandom(_POOL_HEX // 2).hex()
                pos = 0
            self._pool_pos = pos + 16
            rand = self._pool[pos : pos + 16]
            variant = _VARIANT_NIBBLE[rand[0]]
            return f"{self._prefix}7{self._seq:03x}-{variant}{rand[1:4]}-{rand[4:]}"

    def _start_ms(self, ms: int) -> None:
        if not 0 <= ms < 1 << 48:
            raise ValueError("timestamp does not fit the 48-bit UUIDv7 field")
        self._last_ms = ms
        hex_ms = f"{ms:012x}"
        self._prefix = f"{hex_ms[:8]}-{hex_ms[8:]}-"
        self._seq = int.from_bytes(os.urandom(2), "big") & 0x7FF


# The top two bits of rand_b's first nibble become the variant 0b10.
_VARIANT_NIBBLE = {f"{n:x}": f"{0x8 | (n & 0x3):x}" for n in range(16)}
_GENERATOR = _Generator()


def uuid7_str(now_ms: int | None = None) -> str:
    """A new UUIDv7 in canonical form (36 lowercase characters); ``now_ms`` is for tests."""
    return _GENERATOR.next_str(now_ms)


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7 as a :class:`uuid.UUID`."""
    return uuid.UUID(_GENERATOR.next_str(now_ms))


def uuid7_timestamp_ms(value: uuid.UUID | str) -> int:
    """The Unix time in milliseconds stored in a UUIDv7."""
    as_int = value.int if isinstance(value, uuid.UUID) else uuid.UUID(value).int
    return as_int >> 80
