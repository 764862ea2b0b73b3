"""fill_gaps: records the consumer skipped over are read back from the broker in place."""

from __future__ import annotations

from streams.core.aggregate import SourceRecord
from streams.runtime.gaps import fill_gaps


def rec(offset: int) -> SourceRecord:
    return SourceRecord(offset, 1_000, "c", b"{}")


class Log:
    """A partition's data records by offset; offsets absent here have no data record."""

    def __init__(self, offsets: list[int]) -> None:
        self.records = {o: rec(o) for o in offsets}
        self.calls: list[tuple[int, int, int]] = []

    async def fetch(self, partition: int, start: int, end: int) -> list[SourceRecord]:
        self.calls.append((partition, start, end))
        return [self.records[o] for o in range(start, end) if o in self.records]


async def test_a_hole_inside_a_batch_is_filled_in_order() -> None:
    log = Log(list(range(100)))
    delivered = [rec(o) for o in (10, 11, 12, 20, 21)]
    out, holes, filled = await fill_gaps(3, delivered, applied=9, fetch=log.fetch)
    assert [r.offset for r in out] == list(range(10, 22))
    assert filled == 7 and log.calls == [(3, 13, 20)] and holes == [(13, 19)]


async def test_a_position_behind_the_first_record_is_caught_up() -> None:
    """A restart whose consumer offset was committed past state: read from the state's."""
    log = Log(list(range(100)))
    out, holes, filled = await fill_gaps(0, [rec(50), rec(51)], applied=44, fetch=log.fetch)
    assert [r.offset for r in out] == list(range(45, 52))
    assert filled == 5 and holes == [(45, 49)]


async def test_offsets_without_data_cost_one_fetch_and_nothing_else() -> None:
    """Transaction markers or records deleted by retention leave legitimate holes."""
    log = Log([5, 9, 10])
    out, holes, filled = await fill_gaps(1, [rec(9), rec(10)], applied=5, fetch=log.fetch)
    assert [r.offset for r in out] == [9, 10]
    assert filled == 0 and log.calls == [(1, 6, 9)] and holes == [(6, 8)]


async def test_replays_are_kept_and_no_state_means_no_lookback() -> None:
    log = Log(list(range(100)))
    out, holes, filled = await fill_gaps(2, [rec(3), rec(4), rec(5)], applied=4,
                                         fetch=log.fetch)
    assert [r.offset for r in out] == [3, 4, 5] and filled == 0 and holes == []
    out, holes, filled = await fill_gaps(2, [rec(40), rec(41)], applied=-1, fetch=log.fetch)
    assert [r.offset for r in out] == [40, 41] and filled == 0 and log.calls == []
