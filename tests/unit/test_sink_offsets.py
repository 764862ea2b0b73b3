"""The sink's commit rule over transaction markers: a caught-up group commits the end."""

from __future__ import annotations

from streams.sink.offsets import PartitionOffsets


def test_position_past_commit_markers_is_committed_once_everything_is_finished() -> None:
    t = PartitionOffsets()
    t.track(10)
    t.track(11)
    # The consumer stands at 13: offset 12 is the commit marker of the worker's transaction.
    t.seen_to(13)
    assert t.committable() == 10  # 10 and 11 are still in progress
    t.finish(11)
    assert t.committable() == 10
    t.finish(10)
    assert t.committable() == 13
    t.mark_committed(13)
    assert t.to_commit() is None
    t.track(14)  # the next transaction's first record
    assert t.committable() == 14


def test_seen_to_never_moves_back_and_works_before_any_record() -> None:
    t = PartitionOffsets()
    t.seen_to(5)  # only markers so far (an aborted transaction of a fenced worker)
    assert t.committable() == 5
    t.track(6)
    t.seen_to(3)
    t.finish(6)
    assert t.committable() == 7
