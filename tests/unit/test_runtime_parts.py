"""The worker's parts that need no broker: the assignor's plan, local state, the log filter,
how a round's fetch is split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from rocksdict import Rdict

from streams.observability.logs import RetriedErrorsAreWarnings
from streams.runtime.assignor import plan_assignment
from streams.runtime.dataplane import fetched_bytes, split_round
from streams.runtime.local_state import (
    MULTI_GET_CHUNK,
    SST_BLOOM_BITS_PER_KEY,
    MemoryBudget,
    PartitionState,
)


@dataclass(frozen=True)
class _Rec:  # what split_round reads of aiokafka's ConsumerRecord
    offset: int
    serialized_value_size: int


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(1, 5_000), max_size=60), min_size=1, max_size=6),
       st.integers(1_024, 40_000))
def test_a_round_is_split_by_bytes_keeping_every_partitions_records_in_order(
    sizes: list[list[int]], max_bytes: int
) -> None:
    fetched = {TopicPartition("events", p): [_Rec(100 + i, n) for i, n in enumerate(ns)]
               for p, ns in enumerate(sizes)}
    parts = split_round(fetched, max_bytes, fetched_bytes(fetched))
    total = sum(map(sum, sizes))
    if total <= max_bytes:
        assert parts == [fetched]
        return
    for tp, msgs in fetched.items():
        assert [m for part in parts for m in part.get(tp, [])] == msgs
    for part in parts:
        share = max_bytes // len(part)  # no fewer partitions than when the part was cut
        for msgs in part.values():
            assert msgs
            assert len(msgs) == 1 or sum(m.serialized_value_size for m in msgs) <= share
        # Over the bound only by records larger than a share, taken alone.
        assert sum(m.serialized_value_size for msgs in part.values() for m in msgs) <= (
            max_bytes + sum(ms[0].serialized_value_size for ms in part.values() if len(ms) == 1))


def test_a_fetch_of_single_events_is_split_into_near_equal_parts() -> None:
    fetched = {TopicPartition("events", p): [_Rec(i, 100) for i in range(5_000)]
               for p in range(4)}
    parts = split_round(fetched, 1_000_000, fetched_bytes(fetched))  # 2,000,000 bytes
    assert [sum(len(m) for m in part.values()) for part in parts] == [10_000, 10_000]
    assert all(len(part) == 4 for part in parts)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 32), st.lists(st.frozensets(st.integers(0, 40), max_size=12),
                                    min_size=1, max_size=6))
def test_assignment_is_complete_balanced_and_keeps_what_it_can(
    partitions: int, owned: list[frozenset[int]]
) -> None:
    members = {f"m{i}": (f"worker-{i}", o) for i, o in enumerate(owned)}
    plan = plan_assignment(range(partitions), members)
    assigned = [p for parts in plan.values() for p in parts]
    assert sorted(assigned) == list(range(partitions))  # every partition exactly once
    sizes = [len(parts) for parts in plan.values()]
    assert max(sizes) - min(sizes) <= 1
    # Sticky: a member under its share keeps what it owned (and nobody else claimed first).
    quota = partitions // len(members)
    for m, (_id, had) in members.items():
        kept = set(plan[m]) & had
        claimed = {p for other, (_i, o) in members.items() if other < m for p in o}
        wanted = sorted((had & set(range(partitions))) - claimed)
        assert len(kept) >= min(quota, len(wanted))
    assert plan == plan_assignment(range(partitions), members)  # deterministic


def test_a_worker_that_rejoins_keeps_its_partitions() -> None:
    before = plan_assignment(range(8), {"a": ("w1", frozenset()), "b": ("w2", frozenset())})
    after = plan_assignment(range(8), {"b2": ("w2", frozenset(before["b"])),
                                       "a": ("w1", frozenset(before["a"]))})
    assert after["b2"] == before["b"] and after["a"] == before["a"]


def test_a_multi_get_longer_than_a_chunk_answers_every_key_in_order(tmp_path: Path) -> None:
    state = PartitionState(tmp_path / "0", MemoryBudget(32))
    n = MULTI_GET_CHUNK * 2 + 3
    state.apply([(f"D|{i:04d}".encode(), b"%d" % i) for i in range(0, n, 3)], 1)
    keys = [f"D|{i:04d}" for i in reversed(range(n))] + ["D|0000"]  # a key twice
    assert state.view.get_many(keys) == [
        (b"%d" % i if i % 3 == 0 else None) for i in reversed(range(n))] + [b"0"]
    assert state.view.get_many([]) == []
    state.close()


def test_local_state_records_the_changelog_offset_with_the_writes(tmp_path: Path) -> None:
    budget = MemoryBudget(32)
    state = PartitionState(tmp_path / "0", budget)
    assert state.changelog_next == 0 and state.written_ms is None
    state.apply([(b"W|a", b"1"), (b"W|b", b"2"), (b"W|a", None)], 17)
    assert state.changelog_next == 17 and state.written_ms is not None
    assert state.view.get("W|a") is None and state.view.get("W|b") == b"2"
    assert state.view.get_many(["W|a", "W|b"]) == [None, b"2"]
    assert list(state.view.keys_with_prefix("W|")) == ["W|b"]  # bookkeeping keys hidden
    state.apply([(b"W|c", b"3"), (b"X|a", b"4")], 18)
    assert list(state.view.items_with_prefix("W|")) == [("W|b", b"2"), ("W|c", b"3")]
    assert list(state.view.items_with_prefix("Z|")) == []
    state.close()
    reopened = PartitionState(tmp_path / "0", budget)  # kept across a restart
    assert reopened.changelog_next == 18 and reopened.view.get("W|b") == b"2"
    reopened.wipe()
    assert reopened.changelog_next == 0 and reopened.view.get("W|b") is None
    reopened.close()


def test_memtables_are_charged_to_the_one_budget(tmp_path: Path) -> None:
    budget = MemoryBudget(32)
    a = PartitionState(tmp_path / "0", budget)
    b = PartitionState(tmp_path / "1", budget)
    assert budget.memory_bytes == 32 * 2**20
    a.apply([(b"D|%06d" % i, b"x" * 100) for i in range(10_000)], 1)
    b.apply([(b"D|%06d" % i, b"y" * 100) for i in range(5_000)], 1)
    (mem_a, _), (mem_b, _) = a.memory_bytes(), b.memory_bytes()
    assert mem_a > 1_000_000 and mem_b > 500_000  # about 110 bytes a record at least
    # Both databases' memtables are in the one shared cache, and it holds no more than
    # the budget.
    assert mem_a + mem_b <= budget.cache_bytes() <= budget.memory_bytes
    a.close()
    b.close()


def test_every_sst_carries_a_whole_key_bloom_filter(tmp_path: Path) -> None:
    db = Rdict(str(tmp_path / "0"), MemoryBudget(16).options())
    for i in range(2_000):
        db[b"D|%06d" % i] = b"x"
    db.flush()
    props = dict(part.strip().split("=", 1) for part in
                 db.property_value("rocksdb.aggregated-table-properties").split(";")
                 if "=" in part)
    db.close()
    assert int(props["# entries for filter"]) == 2_000  # every key, whole
    filter_bits = int(props["filter block size"]) * 8
    assert 0.9 * SST_BLOOM_BITS_PER_KEY <= filter_bits / 2_000 <= 1.2 * SST_BLOOM_BITS_PER_KEY


def test_retried_aiokafka_errors_are_logged_as_warnings() -> None:
    f = RetriedErrorsAreWarnings()
    retried = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, "", 0,
                                "Group Coordinator Request failed: %s", ("x",), None)
    real = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, "", 0,
                             "Heartbeat session expired - marking coordinator dead", (), None)
    ours = logging.LogRecord("streams.sink", logging.ERROR, "", 0,
                             "Group Coordinator Request failed", (), None)
    assert f.filter(retried) and retried.levelname == "WARNING"
    assert f.filter(real) and real.levelname == "ERROR"
    assert f.filter(ours) and ours.levelname == "ERROR"


def test_local_state_reads_a_prefix_in_key_order_after_a_key(tmp_path: Path) -> None:
    state = PartitionState(tmp_path / "0", MemoryBudget(32))
    state.apply([(f"W|0|{i}".encode(), b"v") for i in (5, 1, 3, 2, 4)] + [(b"X|0", b"x")], 1)
    view = state.view
    assert [k for k, _v in view.items_after("W|0|", "", 2)] == ["W|0|1", "W|0|2"]
    assert [k for k, _v in view.items_after("W|0|", "W|0|2", 10)] == [
        "W|0|3", "W|0|4", "W|0|5"]
    assert view.items_after("W|0|", "W|0|5", 10) == []
    state.close()
