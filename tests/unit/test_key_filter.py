"""Local state's key filter: it may only ever say "absent" for a key the database lacks.

A wrong "absent" for a dedup mark would take a duplicate for a fresh event and bill it
twice, so these properties compare every answer of the view with RocksDB's own, across
writes, deletions, rebuilds, reopening and wiping.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.runtime import local_state
from streams.runtime.local_state import KeyFilter, MemoryBudget, PartitionState

KEYS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).map(
    lambda s: "D|" + s)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=300),
       st.lists(st.binary(min_size=1, max_size=40), max_size=300))
def test_a_filter_holds_every_key_added(added: list[bytes], others: list[bytes]) -> None:
    f = KeyFilter(0)
    for key in added:
        f.add(key)
    assert all(f.may_hold(key) for key in added)
    probe = added + others
    assert f.candidates(probe) == [i for i, key in enumerate(probe) if f.may_hold(key)]


def test_a_filter_rejects_most_keys_never_added() -> None:
    f = KeyFilter(1000)
    for i in range(1000):
        f.add(b"D|added|%d" % i)
    false_positives = len(f.candidates([b"D|other|%d" % i for i in range(10_000)]))
    assert false_positives < 100  # 32 bits a key, two probes: about 0.1%


def _agree(state: PartitionState, keys: list[str]) -> None:
    raw: dict[str, bytes | None] = {k: state._db.get(k.encode()) for k in keys}
    assert state.view.get_many(keys) == [raw[k] for k in keys]
    assert [state.view.get(k) for k in keys] == [raw[k] for k in keys]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(KEYS, st.booleans()), max_size=40), min_size=1, max_size=8),
       st.lists(KEYS, max_size=30), st.sampled_from(["none", "reopen", "wipe"]))
def test_the_view_answers_as_the_database_does(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    batches: list[list[tuple[str, bool]]], never: list[str], then: str,
) -> None:
    # A tiny filter, so that the batches overflow it and rebuilds happen too.
    monkeypatch.setattr(local_state, "_FILTER_MIN_KEYS", 4)
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


def test_state_keys_must_be_bytes(tmp_path: Path) -> None:
    state = PartitionState(tmp_path / "0", MemoryBudget(16))
    try:
        with pytest.raises(TypeError):
            state.apply([("D|a", b"1")], 1)  # type: ignore[list-item]
        assert state.view.get("D|a") is None
    finally:
        state.close()
