"""The producer's durable local spool: an append-only, checksummed log on local disk.

While Kafka is unreachable, :class:`streams.sdk.producer.UsageProducer` appends records here
and replays them, in order, once the broker is back.

Files in the spool directory::

    LOCK                    flock()ed by the one process that owns the spool
    cursor                  "<segment> <offset>": the first record not yet acknowledged
    seg-0000000000000007.log ...   segments, replayed in numeric order

A record is ``crc32 (u32) | key length (u16) | value length (u32) | key | value``
(little-endian); the CRC covers the two lengths, the key and the value. A record is
written with one ``write()``, so a crash of the process never leaves half a record; a
crash of the machine may, and :meth:`Spool.open` truncates a segment at the first record
whose length or checksum is wrong (a torn tail).

Guarantees:

* Appended data survives a crash of the process at once (it is in the page cache) and a
  crash of the machine once :meth:`Spool.sync` has returned (``fsync`` of the segments
  and of the directory). The producer calls it after every append (policy ``always``)
  or every ``fsync_interval_ms`` (policy ``interval``).
* The cursor only moves past records that the caller reports as acknowledged
  (:meth:`Spool.commit`), and is replaced atomically (write, fsync, rename, fsync the
  directory), so after any crash replay resumes at the first record that was not
  acknowledged: at most the acknowledged-but-not-yet-committed tail is sent twice, and
  the event id makes that harmless downstream.
* Segments wholly before the cursor are deleted only after the cursor is durable.
* Rescue segments (:meth:`Spool.begin_episode`) hold the records that were already
  handed to Kafka when the spool took over. They sort before the records spooled after
  them, so replay keeps the order in which events were reported. Replay does not pass an
  unsealed rescue segment, and skips the ranges marked delivered
  (:meth:`Rescue.mark_delivered`: Kafka acknowledged them after all). That mark lives in
  memory only: after a crash those records are replayed once more (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, NamedTuple

from streams.errors import ProducerError

__all__ = ["FsyncPolicy", "Position", "Rescue", "Spool", "SpoolChunk", "frame"]

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval"]

_HEADER = struct.Struct("<IHI")
_LENGTHS = struct.Struct("<HI")
_CRC = struct.Struct("<I")
_SEGMENT_RE = re.compile(r"^seg-(\d{16})\.log$")
_MAX_KEY = 0xFFFF
_MAX_VALUE = 64 * 1024 * 1024


class Position(NamedTuple):
    """A place in the spool: segment number and byte offset in it."""

    segment: int
    offset: int


class SpoolChunk(NamedTuple):
    """Records read from the spool.

    ``ends[i]`` is the position just after record i; ``end`` the position after the last
    record examined (it passes records skipped as already delivered).
    """

    records: list[tuple[bytes, bytes]]
    ends: list[Position]
    end: Position


def _segment_name(number: int) -> str:
    return f"seg-{number:016d}.log"


def frame(key: bytes, value: bytes) -> bytes:
    """One record in the spool's format (see the module docstring)."""
    if len(key) > _MAX_KEY or len(value) > _MAX_VALUE:
        raise ProducerError("spool record too large")
    body = _LENGTHS.pack(len(key), len(value)) + key + value
    return _CRC.pack(zlib.crc32(body)) + body


def _parse(data: bytes, start: int) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """Parse whole, valid records from ``data``; return them and the offset after each."""
    records: list[tuple[bytes, bytes]] = []
    ends: list[int] = []
    pos = 0
    size = len(data)
    header = _HEADER.size
    while pos + header <= size:
        crc, key_len, value_len = _HEADER.unpack_from(data, pos)
        end = pos + header + key_len + value_len
        if end > size:
            break
        body = memoryview(data)[pos + 4 : end]
        if zlib.crc32(body) != crc:
            break
        key = data[pos + header : pos + header + key_len]
        records.append((key, data[pos + header + key_len : end]))
        pos = end
        ends.append(start + pos)
    return records, ends


class Rescue:
    """A reserved segment that sorts before everything spooled after its creation."""

    def __init__(self, spool: Spool, number: int) -> None:
        self._spool = spool
        self.number = number
        self.sealed = False

    def append_framed(self, data: bytes | bytearray) -> tuple[int, int]:
        """Append records already in spool format (:func:`frame`); return their byte range."""
        if self.sealed:
            raise ProducerError("rescue segment already sealed")
        return self._spool._write(self.number, data)  # noqa: SLF001 - its own spool

    def mark_delivered(self, byte_range: tuple[int, int]) -> None:
        """Kafka acknowledged the records in ``byte_range``: replay skips them."""
        self._spool._skips.setdefault(  # noqa: SLF001 - its own spool
            self.number, []).append(byte_range)

    def seal(self) -> None:
        """No more records will come: replay may read this segment and pass it."""
        if not self.sealed:
            self.sealed = True
            self._spool._seal(self.number)  # noqa: SLF001 - its own spool


class Spool:
    """An append-only log of (key, value) records in a directory, with a durable cursor.

    Not thread-safe: one event loop owns it. Only :meth:`sync` and :meth:`commit` do
    their blocking ``fsync`` calls in a worker thread.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        fsync: FsyncPolicy = "interval",
        segment_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.directory = Path(directory)
        self.fsync_policy: FsyncPolicy = fsync
        self.segment_max_bytes = segment_max_bytes
        self._lock_fd: int | None = None
        self._cursor = Position(0, 0)
        self._sizes: dict[int, int] = {}  # segment number -> bytes, for every live segment
        self._fds: dict[int, int] = {}  # open write descriptors
        self._unsealed: set[int] = set()  # rescue segments still being written
        self._skips: dict[int, list[tuple[int, int]]] = {}  # delivered ranges per segment
        self._active: int | None = None  # segment receiving ordinary appends
        self._next_number = 0
        self._write_seq = 0
        self._synced_seq = 0
        self._dirty: set[int] = set()
        self._retired: list[int] = []
        self._dir_dirty = False
        self._sync_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, load the cursor, drop segments before it, cut torn tails."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ProducerError(
                f"spool directory {self.directory} is in use by another producer; give each "
                "producer process its own spool_dir"
            ) from None
        self._lock_fd = fd
        self._cursor = self._load_cursor()
        for entry in sorted(os.listdir(self.directory)):
            match = _SEGMENT_RE.match(entry)
            if not match:
                continue
            number = int(match.group(1))
            path = self.directory / entry
            if number < self._cursor.segment:
                path.unlink()
                continue
            self._sizes[number] = self._recover_segment(path)
        last = max(self._sizes, default=self._cursor.segment - 1)
        self._next_number = max(last + 1, self._cursor.segment)
        if self._sizes:
            log.info(
                "spool %s: %d bytes in %d segment(s) to replay from %s",
                self.directory, self.pending_bytes, len(self._sizes), tuple(self._cursor),
            )

    def close(self) -> None:
        """fsync everything and release the directory lock."""
        for fd in list(self._fds.values()) + self._retired:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
        self._fds.clear()
        self._retired.clear()
        self._dirty.clear()
        self._active = None
        if self._dir_dirty:
            self._fsync_dir()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records to the active segment."""
        self.append_framed(b"".join(frame(k, v) for k, v in records))

    def append_framed(self, data: bytes | bytearray) -> None:
        """Append records already in spool format (:func:`frame`) to the active segment,
        rotating it when full."""
        if self._active is None or self._sizes[self._active] >= self.segment_max_bytes:
            self._rotate()
        assert self._active is not None
        self._write(self._active, data)

    def begin_episode(self) -> Rescue:
        """Reserve a rescue segment; later appends go to a segment after it."""
        number = self._new_number()
        self._unsealed.add(number)
        self._sizes[number] = 0
        self._rotate()
        return Rescue(self, number)

    def _seal(self, number: int) -> None:
        self._unsealed.discard(number)
        fd = self._fds.pop(number, None)
        if fd is not None:
            self._retired.append(fd)

    def _new_number(self) -> int:
        number = self._next_number
        self._next_number += 1
        return number

    def _rotate(self) -> None:
        if self._active is not None:
            fd = self._fds.pop(self._active, None)
            if fd is not None:
                self._retired.append(fd)
        self._active = self._new_number()
        self._sizes[self._active] = 0

    def _write(self, number: int, data: bytes | bytearray) -> tuple[int, int]:
        start = self._sizes[number]
        if not data:
            return start, start
        fd = self._fds.get(number)
        if fd is None:
            path = self.directory / _segment_name(number)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                raise ProducerError(f"cannot create spool segment {path}: {exc}") from exc
            self._fds[number] = fd
            self._dir_dirty = True
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write only happens on a full disk
                written += os.write(fd, data[written:])
        except OSError as exc:
            raise ProducerError(f"cannot write the spool in {self.directory}: {exc}") from exc
        self._sizes[number] += len(data)
        self._dirty.add(fd)
        self._write_seq += 1
        return start, start + len(data)

    async def sync(self) -> None:
        """Return once every record appended before the call is fsynced (group commit)."""
        target = self._write_seq
        if self._synced_seq >= target and not self._dir_dirty:
            return
        async with self._sync_lock:
            if self._synced_seq >= target and not self._dir_dirty:
                return
            seq = self._write_seq
            fds = list(self._dirty)
            self._dirty.clear()
            retired, self._retired = self._retired, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                await asyncio.to_thread(self._fsync_all, fds, dir_dirty)
            finally:
                for fd in retired:
                    os.close(fd)
            self._synced_seq = seq

    def _fsync_all(self, fds: list[int], dir_too: bool) -> None:
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise ProducerError(f"cannot fsync the spool in {self.directory}: {exc}") from exc
        if dir_too:
            self._fsync_dir()

    def _fsync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- reading and the cursor -------------------------------------------------------

    @property
    def cursor(self) -> Position:
        """The durable cursor: the first record not yet acknowledged."""
        return self._cursor

    @property
    def pending_bytes(self) -> int:
        """Bytes in the spool from the cursor on."""
        return sum(
            max(0, size - (self._cursor.offset if n == self._cursor.segment else 0))
            for n, size in self._sizes.items()
            if n >= self._cursor.segment
        )

    def has_data_after(self, position: Position) -> bool:
        """Whether any record (or an unsealed rescue segment) lies at or after ``position``."""
        for number, size in self._sizes.items():
            if number > position.segment and (size > 0 or number in self._unsealed):
                return True
            if number == position.segment and (
                size > position.offset or number in self._unsealed
            ):
                return True
        return False

    def read(self, position: Position, *, max_records: int, max_bytes: int) -> SpoolChunk:
        """Read up to the limits from ``position``, stopping at an unsealed rescue segment.

        Records in ranges marked delivered are skipped (but ``end`` moves past them).
        """
        records: list[tuple[bytes, bytes]] = []
        ends: list[Position] = []
        end = position
        budget = max_bytes
        for number in sorted(n for n in self._sizes if n >= position.segment):
            if number in self._unsealed:
                break
            start = position.offset if number == position.segment else 0
            size = self._sizes[number]
            skips = self._skips.get(number, ())
            want = max(budget, 1 << 16)
            while start < size and len(records) < max_records and budget > 0:
                with open(self.directory / _segment_name(number), "rb") as fh:
                    fh.seek(start)
                    data = fh.read(min(size - start, want))
                got, got_ends = _parse(data, start)
                if not got:
                    if len(data) >= size - start:
                        raise ProducerError(
                            f"spool segment {number} is unreadable at offset {start}"
                        )
                    want = size - start  # one record is larger than the read: take all
                    continue
                for record, record_end in zip(got, got_ends, strict=True):
                    if len(records) >= max_records or budget <= 0:
                        break
                    budget -= record_end - start
                    record_start, start = start, record_end
                    end = Position(number, record_end)
                    if any(lo <= record_start < hi for lo, hi in skips):
                        continue
                    records.append(record)
                    ends.append(end)
            if start >= size:
                end = max(end, Position(number, size))
            if len(records) >= max_records or budget <= 0:
                break
        return SpoolChunk(records, ends, end)

    async def commit(self, position: Position) -> None:
        """Make ``position`` the durable cursor; delete the segments before it."""
        if position <= self._cursor:
            return
        await asyncio.to_thread(self._write_cursor, position)
        self._cursor = position
        self._drop_before(position.segment)

    def reset_if_drained(self) -> bool:
        """If nothing is left after the cursor, delete every segment and start afresh."""
        if self.has_data_after(self._cursor):
            return False
        if not self._sizes:
            return True
        for fd in list(self._fds.values()) + self._retired:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._retired.clear()
        self._dirty.clear()
        self._active = None
        fresh = Position(self._new_number(), 0)
        self._write_cursor(fresh)
        self._cursor = fresh
        self._drop_before(fresh.segment)
        return True

    def _drop_before(self, segment: int) -> None:
        for number in sorted(n for n in self._sizes if n < segment):
            self._skips.pop(number, None)
            fd = self._fds.pop(number, None)
            if fd is not None:
                self._dirty.discard(fd)
                os.close(fd)
            del self._sizes[number]
            with contextlib.suppress(FileNotFoundError):
                (self.directory / _segment_name(number)).unlink()

    def _write_cursor(self, position: Position) -> None:
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{position.segment} {position.offset}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / "cursor")
        self._fsync_dir()

    def _load_cursor(self) -> Position:
        path = self.directory / "cursor"
        try:
            text = path.read_text(encoding="ascii").split()
            return Position(int(text[0]), int(text[1]))
        except FileNotFoundError:
            return Position(0, 0)
        except (ValueError, IndexError) as exc:
            raise ProducerError(f"spool cursor {path} is corrupt: {exc}") from exc

    def _recover_segment(self, path: Path) -> int:
        data = path.read_bytes()
        _, ends = _parse(data, 0)
        valid = ends[-1] if ends else 0
        if valid < len(data):
            log.warning(
                "spool segment %s: cutting a torn or corrupt tail of %d bytes at offset %d",
                path.name, len(data) - valid, valid,
            )
            with open(path, "r+b") as fh:
                fh.truncate(valid)
                fh.flush()
                os.fsync(fh.fileno())
        return valid
