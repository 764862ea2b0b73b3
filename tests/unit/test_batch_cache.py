"""The batch state cache: read-your-writes, one read per key, bulk reads, write order by kind."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from streams.core.cache import BatchCache, Kind, read_many


class CountingStore:
    """A dict store that counts its reads; ``bulk`` adds get_many."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data
        self.gets = 0
        self.bulk_calls = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.data.get(key)

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [k for k in self.data if k.startswith(prefix)]


class BulkStore(CountingStore):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.bulk_calls += 1
        return [self.data.get(k) for k in keys]


def test_read_many_uses_get_many_when_there_is_one() -> None:
    plain, bulk = CountingStore({"a": b"1"}), BulkStore({"a": b"1"})
    assert list(read_many(plain, ["a", "b"])) == [b"1", None]
    assert plain.gets == 2
    assert list(read_many(bulk, ["a", "b"])) == [b"1", None]
    assert (bulk.gets, bulk.bulk_calls) == (0, 1)


def test_each_key_is_read_once_and_writes_are_read_back() -> None:
    store = BulkStore({"D|1": b"7", "W|1": b"w"})
    cache = BatchCache(store)
    cache.prefetch(["D|1", "D|2", "D|1"], int)
    assert (store.bulk_calls, cache.values["D|1"], cache.values["D|2"]) == (1, 7, None)
    cache.prefetch(["D|1", "D|2"], int)  # already cached: no read
    assert store.bulk_calls == 1
    cache.put("D|2", Kind.DEDUP, 9)
    assert cache.get("D|2", int) == 9
    cache.delete("D|1", Kind.DEDUP)
    assert cache.get("D|1", int) is None and store.gets == 0
    assert cache.scan("D|", Kind.DEDUP) == ["D|2"]  # store minus deletions plus writes


def test_a_sparse_prefetch_keeps_only_what_it_finds_and_what_the_batch_did() -> None:
    store = BulkStore({"D|found": b"7", "D|gone": b"3", "D|mine": b"4"})
    cache = BatchCache(store)
    cache.delete("D|gone", Kind.DEDUP)  # a deletion the batch redid before reading
    cache.put("D|mine", Kind.DEDUP, 11)
    cache.prefetch_sparse(["D|found", "D|absent", "D|gone", "D|mine", "D|found"], int)
    assert store.bulk_calls == 1 and store.gets == 0
    assert cache.values == {"D|found": 7, "D|gone": None, "D|mine": 11}
    assert cache.values.get("D|absent") is None
    cache.prefetch_sparse([], int)
    assert store.bulk_calls == 1


class Rec:
    def __init__(self, text: str) -> None:
        self.text = text

    def encode(self) -> bytes:
        return self.text.encode()


def test_writes_follow_the_declared_kind_not_the_key_text() -> None:
    cache = BatchCache(CountingStore({}))
    cache.put("a-window", Kind.WINDOW, Rec("w"))
    cache.put("z-spend", Kind.SPEND, Rec("s"))
    cache.put("m-mark", Kind.DEDUP, 5)
    cache.put("b-expiry", Kind.EXPIRY, 1)
    cache.put("gone", Kind.DEDUP, 3)
    cache.delete("gone", Kind.DEDUP)
    cache.put("back", Kind.DEDUP, 4)
    cache.delete("back")
    cache.put("back", Kind.DEDUP, 6)  # written again after its deletion: a write, not a delete
    assert cache.writes(("P|0", b"p")) == [
        ("b-expiry", b"1"), ("m-mark", b"5"), ("back", b"6"), ("z-spend", b"s"),
        ("a-window", b"w"), ("P|0", b"p"), ("gone", None),
    ]


class ItemsStore(BulkStore):
    """A store that also lists keys with their values under a prefix."""

    def __init__(self, data: dict[str, bytes]) -> None:
        super().__init__(data)
        self.item_scans = 0

    def items_with_prefix(self, prefix: str) -> Iterable[tuple[str, bytes]]:
        self.item_scans += 1
        return [(k, v) for k, v in self.data.items() if k.startswith(prefix)]


def test_a_scan_with_values_sees_the_batch_as_a_scan_and_a_prefetch_would() -> None:
    data = {"W|1": b"1", "W|2": b"2", "W|3": b"3", "W|4": b"4", "X|1": b"9"}
    caches = [BatchCache(BulkStore(dict(data))), BatchCache(ItemsStore(dict(data)))]
    for cache in caches:
        assert cache.get("W|1", int) == 1
        cache.put("W|2", Kind.WINDOW, 20)  # written before the scan: keeps 20
        cache.delete("W|3", Kind.WINDOW)  # deleted: not listed
        cache.put("W|5", Kind.WINDOW, 50)  # new in the batch: listed
        assert cache.scan_values("W|", Kind.WINDOW, int) == ["W|1", "W|2", "W|4", "W|5"]
        assert {k: cache.values[k] for k in ("W|1", "W|2", "W|3", "W|4", "W|5")} == {
            "W|1": 1, "W|2": 20, "W|3": None, "W|4": 4, "W|5": 50}
        assert "X|1" not in cache.values
    bulk, items = caches[0].store, caches[1].store
    assert isinstance(bulk, BulkStore) and isinstance(items, ItemsStore)
    assert (bulk.bulk_calls, items.bulk_calls, items.item_scans) == (1, 0, 1)


class OrderedStore(ItemsStore):
    """A store that also reads a prefix's keys in order from a position (RocksDB's seek)."""

    def items_after(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.data.items()
                      if k.startswith(prefix) and k > after)[:limit]


def test_a_scan_after_a_key_reads_a_bounded_slice_in_order_with_the_batch_writes() -> None:
    data = {f"W|{i}": str(i).encode() for i in range(1, 8)} | {"X|1": b"9"}
    for store in (BulkStore(dict(data)), OrderedStore(dict(data))):
        cache = BatchCache(store)
        cache.put("W|3", Kind.WINDOW, 30)
        cache.delete("W|4", Kind.WINDOW)
        cache.put("W|45", Kind.WINDOW, 45)  # new in the batch, inside the slice
        cache.put("W|9", Kind.WINDOW, 90)  # new in the batch, past the slice
        # The store's W|2..W|5 (less the deleted W|4), and the batch's W|45.
        assert cache.scan_values_after("W|", "W|1", 4, Kind.WINDOW, int) == (
            ["W|2", "W|3", "W|45", "W|5"], "W|5")
        assert cache.values["W|3"] == 30 and cache.values["W|2"] == 2
        # The rest: the store ends before the limit, so every batch write after joins.
        assert cache.scan_values_after("W|", "W|5", 4, Kind.WINDOW, int) == (
            ["W|6", "W|7", "W|9"], None)
        assert "X|1" not in cache.values
