"""Local state: one RocksDB database per owned partition, holding committed data only.

Each database is a cache of its changelog partition that knows how far it goes: every
write batch carries, besides the batch's state records, the changelog offset they reflect
(``changelog_next``: the first changelog offset the database does not hold yet). The
worker writes a batch here only after the Kafka transaction that carried its changelog
records committed, and a RocksDB write batch is atomic, so after any crash (kill -9 too)
the database is an exact image of the changelog up to ``changelog_next``. A restart then
restores only the changelog tail past it (:mod:`streams.runtime.restore`).

Memory: one :class:`MemoryBudget` per process. Every database shares one block cache,
and their write buffers (memtables) are charged against the same cache through a
``WriteBufferManager``, so the process's RocksDB memory stays within one number however
many partitions it holds.

Reads of absent keys: the core asks for many keys that do not exist (every fresh event's
dedup mark, every window a batch touches first). Each database keeps a :class:`KeyFilter`,
a Bloom filter over every key it holds, and answers "absent" for a key the filter has never
seen without asking RocksDB (whose binding costs about 0.6 µs of CPU a missing key).
The filter is a superset by construction: it is built from a scan of the database when the
database is opened (or wiped), and every key :meth:`PartitionState.apply` writes joins it
*before* the write batch reaches RocksDB, which is the only way keys enter the database
(restore goes through ``apply`` too). So "absent" is always true, and a key the filter
wrongly holds (a hash collision, or a key deleted since the last rebuild) costs one read,
never a wrong answer: a duplicate event is never taken for a fresh one. Only committed data
reaches ``apply`` (see the module doc above), so an aborted batch never enters the filter;
had it, it would only cost reads.

Only this module and :mod:`streams.runtime.restore` import rocksdict.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

__all__ = ["META_PREFIX", "KeyFilter", "MemoryBudget", "PartitionState", "StateView"]

log = logging.getLogger(__name__)

# Keys of the store's own bookkeeping. The core's keys start with a letter and a "|", so
# this prefix never meets one of its prefix scans.
META_PREFIX = b"\x00meta|"
_CHANGELOG_NEXT = META_PREFIX + b"changelog_next"
_WRITTEN_MS = META_PREFIX + b"written_ms"


class MemoryBudget:
    """One process-wide bound on RocksDB memory: a shared block cache and write buffers.

    Half of the budget may be memtables (charged to the cache, so the cache's capacity is
    the whole bound); each database gets small write buffers so that many partitions do
    not each ask for the RocksDB default of 64 MiB.
    """

    def __init__(self, memory_mb: int) -> None:
        self.memory_bytes = memory_mb * 1024 * 1024
        self.cache = Cache(self.memory_bytes)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            self.memory_bytes // 2, False, self.cache)

    def options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(min(16 * 1024 * 1024, max(1024 * 1024,
                                                             self.memory_bytes // 16)))
        opts.set_max_write_buffer_number(2)
        opts.set_write_buffer_manager(self.write_buffers)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        opts.set_block_based_table_factory(table)
        return opts


# Bloom filter sizing: bits per key when (re)built, and the least bits per key it may reach
# before a rebuild. One probe (a second one doubles the cost of every add for little): at
# 32 bits a key about 3% of absent keys still get read, at 8 bits about 12%.
_FILTER_BITS_PER_KEY = 32
_FILTER_MIN_BITS_PER_KEY = 8
_FILTER_MIN_KEYS = 1 << 16
# At most 4 MiB a partition (beside RocksDB's own budget): a database with more keys than
# a filter this size tells apart (a million at 32 bits a key, four at 8) is read key by
# key, as without a filter. Dedup marks dominate the key count: a partition taking more
# than about 24 events/s, held for a 48 h dedup horizon, outgrows it.
_FILTER_MAX_BITS = 1 << 25


class KeyFilter:
    """A Bloom filter over byte keys (one probe): :meth:`may_hold` is False only for a key
    never added. Python's ``hash`` is salted per process, which is fine for a filter that
    lives in one process's memory. ``full`` says when a rebuild is due: adds (deleted keys
    never leave a Bloom filter) have brought it to :data:`_FILTER_MIN_BITS_PER_KEY` bits a
    key."""

    __slots__ = ("_bits", "_mask", "added", "at_most", "capacity")

    def __init__(self, keys: int) -> None:
        n_bits = 1 << (max(keys, _FILTER_MIN_KEYS) * _FILTER_BITS_PER_KEY - 1).bit_length()
        self.at_most = n_bits >= _FILTER_MAX_BITS  # as large as a filter gets
        n_bits = max(8, min(n_bits, _FILTER_MAX_BITS))
        self._bits = bytearray(n_bits >> 3)
        self._mask = n_bits - 1
        self.added = 0
        self.capacity = n_bits // _FILTER_MIN_BITS_PER_KEY

    @property
    def full(self) -> bool:
        return self.added > self.capacity

    def add(self, keys: Sequence[bytes]) -> None:
        bits, mask = self._bits, self._mask
        for key in keys:
            a = hash(key) & mask
            bits[a >> 3] |= 1 << (a & 7)
        self.added += len(keys)

    def may_hold(self, key: bytes) -> bool:
        a = hash(key) & self._mask
        return bool(self._bits[a >> 3] >> (a & 7) & 1)

    def candidates(self, keys: Sequence[bytes]) -> list[int]:
        """Positions in ``keys`` of the keys that may have been added (the others were not)."""
        bits, mask = self._bits, self._mask
        return [i for i, key in enumerate(keys)
                if bits[(a := hash(key) & mask) >> 3] >> (a & 7) & 1]


class StateView:
    """The core's read access to one partition (``StateReader``): str keys, bytes values.

    Keys its :class:`KeyFilter` never saw are answered None without a read.
    """

    __slots__ = ("_db", "filter")

    def __init__(self, db: Rdict, key_filter: KeyFilter | None) -> None:
        self._db: Any = db  # raw mode: bytes keys and values (the stubs say "any key type")
        self.filter = key_filter  # None: too many keys for one (every key is read)

    def get(self, key: str) -> bytes | None:
        raw = key.encode()
        if self.filter is not None and not self.filter.may_hold(raw):
            return None
        value: bytes | None = self._db.get(raw)
        return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in their order: one multi-get for the keys the filter
        may hold, None for the others."""
        raws = [k.encode() for k in keys]
        if self.filter is None:
            every: list[bytes | None] = self._db.get(raws) if raws else []
            return every
        found = self.filter.candidates(raws)
        values: list[bytes | None] = [None] * len(raws)
        if found:
            for i, value in zip(found, self._db.get([raws[i] for i in found]), strict=True):
                values[i] = value
        return values

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        start = prefix.encode()
        for key in self._db.keys(from_key=start):
            if not key.startswith(start):
                return
            yield key.decode()


class PartitionState:
    """One partition's RocksDB database and the changelog position it reflects."""

    def __init__(self, path: Path, budget: MemoryBudget) -> None:
        self.path = path
        self._budget = budget
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), budget.options())
        self.view = StateView(self._db, self._build_filter())

    def _build_filter(self) -> KeyFilter | None:
        """A filter holding every key of the database (one scan of its keys), or None when
        the database has more keys than the largest filter tells apart."""
        db: Any = self._db  # raw mode: bytes keys (the stubs say "any key type")
        estimate = db.property_int_value("rocksdb.estimate-num-keys") or 0
        while True:
            key_filter = KeyFilter(estimate)
            keys = db.keys()
            while chunk := list(islice(keys, 65_536)):
                key_filter.add(chunk)
            if not key_filter.full:  # the estimate was not far below the truth
                return key_filter
            if key_filter.at_most:
                log.info("state %s: too many keys for a key filter; reading every key",
                         self.path)
                return None
            estimate = key_filter.added

    @property
    def changelog_next(self) -> int:
        """The first changelog offset this database does not hold (0: nothing yet)."""
        raw = self._db.get(_CHANGELOG_NEXT)
        return int(raw) if raw is not None else 0

    @property
    def written_ms(self) -> int | None:
        """Wall time of the last write (None: never written)."""
        raw = self._db.get(_WRITTEN_MS)
        return int(raw) if raw is not None else None

    def apply(self, writes: Iterable[tuple[bytes, bytes | None]], changelog_next: int) -> int:
        """Write ``writes`` in order (None deletes) and the position they reach: one batch.

        Returns the number of state records written.
        """
        batch = WriteBatch(raw_mode=True)
        put: list[bytes] = [_CHANGELOG_NEXT, _WRITTEN_MS]
        n = 0
        for key, value in writes:
            if value is None:
                batch.delete(key)
            elif type(key) is bytes:  # the filter hashes bytes: a str would hash otherwise
                put.append(key)
                batch.put(key, value)
            else:
                raise TypeError(f"state keys are bytes, got {type(key).__name__}")
            n += 1
        batch.put(_CHANGELOG_NEXT, b"%d" % changelog_next)
        batch.put(_WRITTEN_MS, b"%d" % int(time.time() * 1000))
        # Every key written joins the filter before RocksDB has it (see the module doc).
        key_filter = self.view.filter
        if key_filter is not None:
            key_filter.add(put)
        self._db.write(batch)
        if key_filter is not None and key_filter.full:  # deletions, growth: from the data
            self.view.filter = self._build_filter()
        return n

    def wipe(self) -> None:
        """Delete every record: the next restore starts from the changelog's beginning."""
        self._db.close()
        Rdict.destroy(str(self.path), self._budget.options())
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = Rdict(str(self.path), self._budget.options())
        self.view = StateView(self._db, self._build_filter())

    def close(self) -> None:
        self._db.close()
