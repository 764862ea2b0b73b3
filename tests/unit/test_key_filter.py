"""Local state's key filter: it may only ever say "absent" for a key the database lacks.

A wrong "absent" for a dedup mark would take a duplicate for a fresh event and bill it
twice, so these properties compare every answer of the view with RocksDB's own, across
writes, deletions, rebuilds, reopening and wiping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, BatchResult, SourceRecord
from streams.runtime import local_state
from streams.runtime.local_state import KeyFilter, MemoryBudget, PartitionState
from streams.testing.memory_state import MemoryState
from tests.unit.test_aggregate_properties import CONFIG, workloads

KEYS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).map(
    lambda s: "D|" + s)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=300),
       st.lists(st.binary(min_size=1, max_size=40), max_size=300))
def test_a_filter_holds_every_key_added(added: list[bytes], others: list[bytes]) -> None:
    f = KeyFilter(0)
    f.add(added)
    assert all(f.may_hold(key) for key in added)
    probe = added + others
    assert f.candidates(probe) == [i for i, key in enumerate(probe) if f.may_hold(key)]


def test_a_filter_rejects_most_keys_never_added() -> None:
    f = KeyFilter(1000)
    f.add([b"D|added|%d" % i for i in range(1000)])
    false_positives = len(f.candidates([b"D|other|%d" % i for i in range(10_000)]))
    assert false_positives < 600  # 32 bits a key, one probe: about 3%


def _agree(state: PartitionState, keys: list[str]) -> None:
    raw: dict[str, bytes | None] = {k: state._db.get(k.encode()) for k in keys}
    assert state.view.get_many(keys) == [raw[k] for k in keys]
    assert [state.view.get(k) for k in keys] == [raw[k] for k in keys]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(KEYS, st.booleans()), max_size=40), min_size=1, max_size=8),
       st.lists(KEYS, max_size=30), st.sampled_from(["none", "reopen", "wipe"]),
       st.sampled_from([7, 9, 30]))
def test_the_view_answers_as_the_database_does(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    batches: list[list[tuple[str, bool]]], never: list[str], then: str, max_bits_log: int,
) -> None:
    # A tiny filter, so that the batches overflow it and rebuilds happen too, and a cap
    # low enough that some databases outgrow any filter (then every key is read).
    monkeypatch.setattr(local_state, "_FILTER_MIN_KEYS", 4)
    monkeypatch.setattr(local_state, "_FILTER_MAX_BITS", 1 << max_bits_log)
    path = tmp_path_factory.mktemp("state") / "0"
    budget = MemoryBudget(16)
    state = PartitionState(path, budget)
    seen: list[str] = []
    try:
        for i, batch in enumerate(batches):
            state.apply([(k.encode(), None if delete else b"v%d" % i) for k, delete in batch],
                        i + 1)
            seen += [k for k, _ in batch]
            _agree(state, seen + never)
        if then == "reopen":
            state.close()
            state = PartitionState(path, budget)
        elif then == "wipe":
            state.wipe()
        _agree(state, seen + never)
        state.apply([(k.encode(), b"again") for k in never], len(batches) + 1)
        _agree(state, seen + never)
    finally:
        state.close()


def test_a_full_filter_is_rebuilt_from_the_data(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_state, "_FILTER_MIN_KEYS", 4)
    state = PartitionState(tmp_path / "0", MemoryBudget(16))
    try:
        first = state.view.filter
        state.apply([(b"D|%d" % i, b"1") for i in range(200)], 1)
        assert state.view.filter is not first  # outgrew its capacity: rebuilt
        state.apply([(b"D|%d" % i, None) for i in range(200)], 2)
        assert state.view.get_many([f"D|{i}" for i in range(200)]) == [None] * 200
    finally:
        state.close()


def test_a_database_too_large_for_a_filter_is_read_key_by_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_state, "_FILTER_MIN_KEYS", 4)
    monkeypatch.setattr(local_state, "_FILTER_MAX_BITS", 1 << 8)  # 32 keys at most
    state = PartitionState(tmp_path / "0", MemoryBudget(16))
    try:
        state.apply([(b"D|%d" % i, b"1") for i in range(100)], 1)
        assert state.view.filter is None
        assert state.view.get_many(["D|5", "D|500"]) == [b"1", None]
        state.close()
        state = PartitionState(tmp_path / "0", MemoryBudget(16))  # reopened: still none
        assert state.view.filter is None and state.view.get("D|99") == b"1"
        state.wipe()  # empty again: a filter again
        assert state.view.filter is not None and state.view.get("D|99") is None
    finally:
        state.close()


def test_state_keys_must_be_bytes(tmp_path: Path) -> None:
    state = PartitionState(tmp_path / "0", MemoryBudget(16))
    try:
        with pytest.raises(TypeError):
            state.apply([("D|a", b"1")], 1)  # type: ignore[list-item]
        assert state.view.get("D|a") is None
    finally:
        state.close()


def _comparable(result: BatchResult) -> tuple[Any, ...]:
    """A batch result with its deletions as a set: a prefix scan's order differs between
    stores, and the order of deletions after the partition record does not matter."""
    last = next(i for i, (key, _v) in enumerate(result.writes) if key.startswith("P|"))
    return (result.writes[:last + 1], set(result.writes[last + 1:]), result.summaries,
            result.alerts, result.dead_letters, result.outcomes, result.last_event_ms,
            result.stream_ms, result.open_windows, result.pending_corrections)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(workloads(), st.data())
def test_the_core_on_filtered_local_state_does_what_it_does_on_memory_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    workload: tuple[list[SourceRecord], list[Any]], data: st.DataObject,
) -> None:
    """Same batches, same crash prefixes: every batch's writes and outputs are equal, so the
    filter never changes a dedup decision (and the totals property carries over)."""
    monkeypatch.setattr(local_state, "_FILTER_MIN_KEYS", 4)  # rebuilds happen too
    records, _distinct = workload
    memory = MemoryState()
    state = PartitionState(tmp_path_factory.mktemp("state") / "0", MemoryBudget(16))
    agg = Aggregator(CONFIG)
    try:
        i = crashes = 0
        while i < len(records):
            n = data.draw(st.integers(1, 8))
            want = agg.process(0, records[i:i + n], memory, now_ms=i)
            got = agg.process(0, records[i:i + n], state.view, now_ms=i)
            assert _comparable(got) == _comparable(want)
            keep = len(want.writes)
            if crashes < 4 and data.draw(st.booleans()):
                crashes += 1
                keep = data.draw(st.integers(0, keep))
            memory.apply(want.writes[:keep])
            state.apply([(k.encode(), v) for k, v in want.writes[:keep]], i + 1)
            i = data.draw(st.integers(0, i)) if keep < len(want.writes) and i else i + n
    finally:
        state.close()
