"""UUID version 7 (RFC 9562, section 5.7) from the standard library.

Layout (128 bits, big-endian)::

    unix_ts_ms (48) | ver=0b0111 (4) | rand_a (12) | var=0b10 (2) | rand_b (62)

``rand_a`` is used as a 12-bit counter (RFC 9562 section 6.2, method 1, "fixed-length
dedicated counter"): the first id of a millisecond seeds it with a random value below
2048, later ids of the same millisecond increment it. When it would overflow, or when
the wall clock steps back, the timestamp field is advanced past the last one used, so
ids made by one process are strictly increasing, both as integers and as their
canonical lowercase strings. ``rand_b`` is 62 bits from ``os.urandom``.

Speed (this is on the producer's hot path): an id is three cached strings joined, the
``xxxxxxxx-xxxx-`` timestamp prefix (once per millisecond), the ``7xxx-`` counter group
(a table of 4096) and a ``vxxx-xxxxxxxxxxxx`` random tail. The tails are made 1024 at a
time from one ``os.urandom`` call by C-level bytes operations (variant bits by
``translate``, hex with a dash every two bytes, surplus dashes deleted and separators
set by extended slices, one ``split``), so a tail costs a list index.
"""

from __future__ import annotations

import os
import threading
import uuid
from time import time_ns

__all__ = ["uuid7", "uuid7_str", "uuid7_timestamp_ms"]

_TAILS = 1024  # random tails made per os.urandom call
# rand_b's first byte: the top two bits become the variant 0b10.
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
_COUNTER = tuple(f"7{n:03x}-" for n in range(0x1000))


def _tails() -> list[str]:
    """``_TAILS`` random ``vxxx-xxxxxxxxxxxx`` strings (62 random bits, the variant)."""
    rand = bytearray(os.urandom(8 * _TAILS))
    rand[0::8] = rand[0::8].translate(_VARIANT)
    # "vxxx-xxxx-xxxx-xxxx-vxxx-...": drop the 2nd and 3rd dash of each 20-char group,
    # then the dash between two tails becomes ",".
    text = bytearray(rand.hex("-", 2), "ascii")
    del text[9::20]
    del text[13::19]
    text[17::18] = b"," * (_TAILS - 1)
    return text.decode("ascii").split(",")


class _Generator:
    """Strictly increasing UUIDv7 values; thread-safe."""

    __slots__ = ("_acquire", "_last_ms", "_left", "_prefix", "_release", "_seq", "_tails")

    def __init__(self) -> None:
        lock = threading.Lock()
        # The bound methods, not ``with lock``: a third of the cost of the context manager.
        self._acquire = lock.acquire
        self._release = lock.release
        self._last_ms = -1
        self._seq = 0
        self._prefix = ""
        self._tails: list[str] = []
        self._left = 0  # unused tails: self._tails[:self._left]

    def next_str(self, now_ms: int | None = None) -> str:
        """The next id in canonical form; ``now_ms`` defaults to the wall clock."""
        ms = time_ns() // 1_000_000 if now_ms is None else now_ms
        self._acquire()
        try:
            if ms > self._last_ms:
                seq = self._start_ms(ms)
            else:
                seq = self._seq = self._seq + 1
                if seq > 0xFFF:
                    # Counter exhausted, or the clock went back: borrow the next
                    # millisecond so ordering holds.
                    seq = self._start_ms(self._last_ms + 1)
            left = self._left
            if not left:
                self._tails = _tails()
                left = _TAILS
            self._left = left = left - 1
            return self._prefix + _COUNTER[seq] + self._tails[left]
        finally:
            self._release()

    def _start_ms(self, ms: int) -> int:
        """Move to millisecond ``ms``; return the counter's random start."""
        if not 0 <= ms < 1 << 48:
            raise ValueError("timestamp does not fit the 48-bit UUIDv7 field")
        self._last_ms = ms
        hex_ms = f"{ms:012x}"
        self._prefix = f"{hex_ms[:8]}-{hex_ms[8:]}-"
        seq = self._seq = int.from_bytes(os.urandom(2), "big") & 0x7FF
        return seq


_GENERATOR = _Generator()


# The bound method itself: one call less on the producer's hot path.
uuid7_str = _GENERATOR.next_str
"""A new UUIDv7 in canonical form (36 lowercase characters); ``now_ms`` (epoch
milliseconds, default the wall clock) lets a caller share one clock reading."""


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7 as a :class:`uuid.UUID`."""
    return uuid.UUID(_GENERATOR.next_str(now_ms))


def uuid7_timestamp_ms(value: uuid.UUID | str) -> int:
    """The Unix time in milliseconds stored in a UUIDv7."""
    as_int = value.int if isinstance(value, uuid.UUID) else uuid.UUID(value).int
    return as_int >> 80
