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

Only this module and :mod:`streams.runtime.restore` import rocksdict.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
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

__all__ = ["META_PREFIX", "MULTI_GET_CHUNK", "MemoryBudget", "PartitionState", "StateView"]

log = logging.getLogger(__name__)

# Keys of the store's own bookkeeping. The core's keys start with a letter and a "|", so
# this prefix never meets one of its prefix scans.
META_PREFIX = b"\x00meta|"
_CHANGELOG_NEXT = META_PREFIX + b"changelog_next"
_WRITTEN_MS = META_PREFIX + b"written_ms"
# Keys per multi-get call. RocksDB sorts a multi-get's keys first (n log n comparisons
# through its comparator: 6-7% of the packed core's instructions with the whole batch in
# one call). Smaller calls sort less. Instructions of the packed core workload (valgrind,
# millions): 1,740 with 256 keys a call, 1,727 with 128, 1,720 with 64, 1,713 with 32,
# 1,706 with 16, 1,720 with 8 (the cost of a call takes over). 32 keeps calls few.
MULTI_GET_CHUNK = 32
# Bits a key of each SST's Bloom filter (MemoryBudget.options): about 1% false positives.
SST_BLOOM_BITS_PER_KEY = 10


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

    def cache_bytes(self) -> int:
        """Bytes the shared cache holds now: blocks, plus the memtables charged to it."""
        usage: int = self.cache.get_usage()
        return usage

    def options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(min(16 * 1024 * 1024, max(1024 * 1024,
                                                             self.memory_bytes // 16)))
        opts.set_max_write_buffer_number(2)
        opts.set_write_buffer_manager(self.write_buffers)
        # A whole-key Bloom filter in each memtable (a tenth of its size, charged to the
        # write buffers): most keys a batch looks up are absent (a new event's dedup
        # mark, a new window), and the filter answers those without a skip-list search.
        opts.set_memtable_prefix_bloom_ratio(0.1)
        opts.set_memtable_whole_key_filtering(True)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        # A whole-key Bloom filter in each SST too, on every level: a lookup of an absent
        # key (a new event's dedup mark) then reads no data block, so those blocks neither
        # cost the read nor fill the cache. The filters are cached blocks, inside the
        # budget.
        table.set_bloom_filter(SST_BLOOM_BITS_PER_KEY, False)
        opts.set_block_based_table_factory(table)
        return opts


class StateView:
    """The core's read access to one partition (``StateReader``): str keys, bytes values."""

    __slots__ = ("_db",)

    def __init__(self, db: Rdict) -> None:
        self._db: Any = db  # raw mode: bytes keys and values (the stubs say "any key type")

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._db.get(key.encode())
        return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of many keys, in their order: one multi-get per
        :data:`MULTI_GET_CHUNK` keys."""
        encoded = list(map(str.encode, keys))
        if len(encoded) <= MULTI_GET_CHUNK:
            return self._db.get(encoded) if encoded else []
        values: list[bytes | None] = []
        get = self._db.get
        for i in range(0, len(encoded), MULTI_GET_CHUNK):
            values += get(encoded[i:i + MULTI_GET_CHUNK])
        return values

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        start = prefix.encode()
        for key in self._db.keys(from_key=start):
            if not key.startswith(start):
                return
            yield key.decode()

    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        start = prefix.encode()
        for key, value in self._db.items(from_key=start):
            if not key.startswith(start):
                return
            yield key.decode(), value

    def items_after(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        start = prefix.encode()
        skip = after.encode() if after else None
        out: list[tuple[str, bytes]] = []
        for key, value in self._db.items(from_key=skip or start):
            if not key.startswith(start) or len(out) >= limit:
                break
            if key != skip:
                out.append((key.decode(), value))
        return out


class PartitionState:
    """One partition's RocksDB database and the changelog position it reflects."""

    def __init__(self, path: Path, budget: MemoryBudget) -> None:
        self.path = path
        self._budget = budget
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), budget.options())
        self.view = StateView(self._db)

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
        n = 0
        for key, value in writes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            n += 1
        batch.put(_CHANGELOG_NEXT, b"%d" % changelog_next)
        batch.put(_WRITTEN_MS, b"%d" % int(time.time() * 1000))
        self._db.write(batch)
        return n

    def memory_bytes(self) -> tuple[int, int]:
        """(memtables, table readers): RocksDB's own estimates of this database's memory.

        The memtables are charged to the shared cache, so they are inside the budget. The
        table readers' index and filter blocks are in the cache too; what this counts of
        them is the readers' own memory, outside the budget.
        """
        prop = self._db.property_int_value
        return (prop("rocksdb.size-all-mem-tables") or 0,
                prop("rocksdb.estimate-table-readers-mem") or 0)

    def wipe(self) -> None:
        """Delete every record: the next restore starts from the changelog's beginning."""
        self._db.close()
        Rdict.destroy(str(self.path), self._budget.options())
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = Rdict(str(self.path), self._budget.options())
        self.view = StateView(self._db)

    def close(self) -> None:
        self._db.close()
