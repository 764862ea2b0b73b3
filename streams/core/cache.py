"""One batch's view of a partition's state: read-your-writes, bulk reads, ordered writes.

The aggregator reads and writes state only through a :class:`BatchCache`. It reads each
key from the store at most once per batch (a key the batch wrote or deleted is answered
from the cache), fetches many keys in one call when the store offers ``get_many``, and
hands back the batch's writes in the order the crash argument needs
(docs/exactly-once.md; streams.core.aggregate, point 3):

1. every written key, grouped by its declared :class:`Kind` in the order of the enum
   (expiry entries, dedup marks, spend, windows); within a kind, in the
   order the batch first wrote them;
2. then the partition record;
3. then the deletions, in the order the batch made them.

The kind of a key is declared by the code that writes it, never guessed from the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Any, Protocol

__all__ = ["BatchCache", "BulkStateReader", "Kind", "StateReader", "read_many"]


class StateReader(Protocol):
    """Read access to one partition's state (what the runtime hands the core)."""

    def get(self, key: str) -> bytes | None: ...

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        """Every key that starts with ``prefix`` (in any order)."""
        ...


class BulkStateReader(StateReader, Protocol):
    """A reader that can also fetch many keys in one call, and the keys and values under
    a prefix in one pass (both optional; see read_many and BatchCache.scan_values)."""

    def get_many(self, keys: Sequence[str]) -> Sequence[bytes | None]:
        """The values of ``keys``, in order (None for a missing key)."""
        ...

    def items_with_prefix(self, prefix: str) -> Iterable[tuple[str, bytes]]:
        """Every key that starts with ``prefix``, with its value (in any order)."""
        ...

    def items_after(self, prefix: str, after: str, limit: int
                    ) -> Sequence[tuple[str, bytes]]:
        """The first ``limit`` keys that start with ``prefix`` and sort after ``after``
        ("": from the first), in key order, with their values."""
        ...


def read_many(store: StateReader, keys: Sequence[str]) -> Sequence[bytes | None]:
    """The values of ``keys``: one ``get_many`` call if the store has it, else ``get`` each."""
    get_many: Callable[[Sequence[str]], Sequence[bytes | None]] | None = getattr(
        store, "get_many", None)
    if get_many is not None:
        return get_many(keys)
    get = store.get
    return [get(k) for k in keys]


class Kind(IntEnum):
    """What a state key is; a batch writes kinds in this order (see the module doc)."""

    EXPIRY = 0
    DEDUP = 1
    SPEND = 2
    WINDOW = 3


class BatchCache:
    """Read-your-writes cache of one partition's state for one batch.

    ``values`` maps every key the batch has read or written to its current value (decoded
    by the caller's decoder; None: absent or deleted). The values of one kind are all
    ints (encoded as decimal text) or all objects with ``encode() -> bytes``; they are
    encoded at the end only.
    """

    __slots__ = ("_dirty", "deleted", "store", "values")

    def __init__(self, store: StateReader) -> None:
        self.store = store
        self.values: dict[str, Any] = {}
        self._dirty: tuple[dict[str, None], ...] = tuple({} for _ in Kind)
        self.deleted: dict[str, None] = {}

    def prefetch(self, keys: Iterable[str], decode: Callable[[bytes], Any]) -> None:
        """Read every key of ``keys`` not yet in the cache, in one bulk read."""
        values = self.values
        missing = [k for k in dict.fromkeys(keys) if k not in values]
        if not missing:
            return
        raws = read_many(self.store, missing)
        # None stays None; what was found is decoded.
        values.update(zip(missing, raws, strict=True))
        for key, raw in [(k, r) for k, r in zip(missing, raws, strict=True) if r is not None]:
            values[key] = decode(raw)

    def prefetch_sparse(self, keys: Sequence[str], decode: Callable[[bytes], Any]) -> None:
        """:meth:`prefetch` for keys that are mostly absent (a batch's dedup marks): one
        bulk read, but only what it finds enters ``values`` (a key the batch has read or
        written keeps its value). Read such keys with ``values.get``: absent from
        ``values`` means absent from the store. ``keys`` may repeat a key."""
        if not keys:
            return
        values = self.values
        raws = read_many(self.store, keys)
        for key, raw in [(k, r) for k, r in zip(keys, raws, strict=True) if r is not None]:
            if key not in values:
                values[key] = decode(raw)

    def get(self, key: str, decode: Callable[[bytes], Any]) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raw = self.store.get(key)
            val = self.values[key] = None if raw is None else decode(raw)
            return val

    def put(self, key: str, kind: Kind, value: Any) -> None:
        self.values[key] = value
        self._dirty[kind][key] = None
        if self.deleted:
            self.deleted.pop(key, None)

    def delete(self, key: str, kind: Kind | None = None) -> None:
        """Delete ``key`` (``kind``: where it may be dirty; None: look in every kind)."""
        self.values[key] = None
        for dirty in self._dirty if kind is None else (self._dirty[kind],):
            dirty.pop(key, None)
        self.deleted[key] = None

    def dirty(self, kind: Kind) -> dict[str, None]:
        """The keys of ``kind`` written so far (the hot path adds to it as ``put`` would,
        with ``values`` set and the key taken out of ``deleted``)."""
        return self._dirty[kind]

    def scan(self, prefix: str, kind: Kind) -> list[str]:
        """Keys under ``prefix`` as this batch sees them (store, plus writes, minus
        deletions), sorted; ``kind`` is the kind of every key under the prefix."""
        deleted = self.deleted
        return self._with_writes({k for k in self.store.keys_with_prefix(prefix)
                                  if k not in deleted}, prefix, kind)

    def scan_values(self, prefix: str, kind: Kind, decode: Callable[[bytes], Any]
                    ) -> list[str]:
        """:meth:`scan`, with the value of every key it returns in ``values``: from the
        store's ``items_with_prefix`` when it has one (one pass, no bulk read of keys it
        has just listed), else a scan and a :meth:`prefetch`. A key the batch has read or
        written keeps its value."""
        items: Callable[[str], Iterable[tuple[str, bytes]]] | None = getattr(
            self.store, "items_with_prefix", None)
        if items is None:
            keys = self.scan(prefix, kind)
            self.prefetch(keys, decode)
            return keys
        return self._with_writes(self._take_items(items(prefix), decode), prefix, kind)

    def scan_values_after(self, prefix: str, after: str, limit: int, kind: Kind,
                          decode: Callable[[bytes], Any]) -> tuple[list[str], str | None]:
        """The keys under ``prefix`` that sort after ``after`` ("": all), as this batch sees
        them, in order, with their values in ``values``: about ``limit`` of them (the store's
        first ``limit``, and the batch's writes among them), and the key to go on after
        when more follow (None when none do).

        Reads ``limit`` keys of the store, not the whole prefix, when the store has
        ``items_after``; else it scans the prefix once."""
        items_after: Callable[[str, str, int], Sequence[tuple[str, bytes]]] | None = getattr(
            self.store, "items_after", None)
        if items_after is not None:
            got = items_after(prefix, after, limit + 1)
        else:
            keys = sorted(k for k in self.store.keys_with_prefix(prefix) if k > after)
            keys = keys[:limit + 1]
            got = [(k, v) for k, v in zip(keys, read_many(self.store, keys), strict=True)
                   if v is not None]
        more = len(got) > limit
        got = got[:limit]
        resume = got[-1][0] if more else None
        found = self._take_items(got, decode)
        # The batch's writes in the same range: after ``after`` and, when the store has
        # more, up to the last key read from it.
        found.update(k for k in self._dirty[kind] if k.startswith(prefix) and k > after
                     and (resume is None or k <= resume))
        return sorted(found), resume

    def _take_items(self, items: Iterable[tuple[str, bytes]],
                    decode: Callable[[bytes], Any]) -> set[str]:
        """The keys of ``items`` (read from the store) the batch has not deleted; the value
        of each one the batch has not read or written yet goes into ``values``, decoded."""
        deleted, values = self.deleted, self.values
        found: set[str] = set()
        for key, raw in items:
            if key in deleted:
                continue
            found.add(key)
            if key not in values:
                values[key] = decode(raw)
        return found

    def _with_writes(self, found: set[str], prefix: str, kind: Kind) -> list[str]:
        """``found`` (keys of the store under ``prefix``, less the batch's deletions) and
        the keys of ``kind`` the batch wrote under it, sorted."""
        found.update(k for k in self._dirty[kind] if k.startswith(prefix))
        return sorted(found)

    def writes(self, last: tuple[str, bytes]) -> list[tuple[str, bytes | None]]:
        """The batch's writes in order: kinds in enum order, ``last``, then deletions."""
        values = self.values
        out: list[tuple[str, bytes | None]] = []
        for dirty in self._dirty:
            if not dirty:
                continue
            current = list(map(values.__getitem__, dirty))
            if type(current[0]) is int:  # a kind holds ints (marks, entries) or records
                out += zip(dirty, map(b"%d".__mod__, current), strict=True)
            else:
                out += zip(dirty, [val.encode() for val in current], strict=True)
        out.append(last)
        out += [(key, None) for key in self.deleted]
        return out
