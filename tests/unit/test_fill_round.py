"""The data plane's rounds (streams.runtime.dataplane.fill_round): a round starts once it
holds AGGREGATOR__BATCH_MAX_EVENTS events, or AGGREGATOR__BATCH_MAX_MS after the previous
round started, with a last poll of at most 5 ms."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from streams.runtime.dataplane import fill_round

TP0, TP1 = TopicPartition("events", 0), TopicPartition("events", 1)


class FakePoll:
    """getmany on a fake clock: each call returns the next answer, and advances the
    clock by its timeout when the answer is empty (the poll waited it out) or by 1 ms."""

    def __init__(self, answers: list[dict[TopicPartition, list[int]]]) -> None:
        self.answers = answers
        self.now = 0.0
        self.calls: list[tuple[float, int]] = []

    async def __call__(self, *, timeout_ms: float, max_records: int) -> dict[Any, list[int]]:
        self.calls.append((round(timeout_ms, 3), max_records))
        answer = self.answers.pop(0) if self.answers else {}
        self.now += (0.001 if answer else timeout_ms / 1000)
        return {tp: msgs[:max_records] for tp, msgs in answer.items()}

    def clock(self) -> float:
        return self.now


def fill(poll: FakePoll, fetched: dict[Any, list[int]], *, max_events: int, until: float,
         stopping: bool = False) -> dict[Any, list[int]]:
    asyncio.run(fill_round(poll, fetched, max_events=max_events, until=until,
                           stopping=lambda: stopping, clock=poll.clock))
    return fetched


def test_a_full_round_starts_without_another_poll() -> None:
    poll = FakePoll([{TP0: [9]}])
    got = fill(poll, {TP0: [1, 2], TP1: [3]}, max_events=3, until=10.0)
    assert got == {TP0: [1, 2], TP1: [3]}
    assert poll.calls == []


def test_a_round_keeps_polling_until_the_interval_and_keeps_the_order() -> None:
    poll = FakePoll([{TP0: [2]}, {}, {TP1: [5], TP0: [3]}])
    got = fill(poll, {TP0: [1]}, max_events=100, until=0.050)
    assert got == {TP0: [1, 2, 3], TP1: [5]}
    # 50 ms left, then 49 after the first answer; the empty poll waits the 49 out, so the
    # next one is the last, short poll.
    assert poll.calls == [(50.0, 99), (49.0, 98), (5, 98)]
    assert poll.now >= 0.050


def test_a_round_stops_filling_once_full() -> None:
    poll = FakePoll([{TP0: [2, 3]}, {TP1: [4, 5, 6]}])
    got = fill(poll, {TP0: [1]}, max_events=4, until=0.050)
    assert got == {TP0: [1, 2, 3], TP1: [4]}  # at most max_events: the rest stays fetched
    assert [max_records for _t, max_records in poll.calls] == [3, 1]


def test_after_a_long_round_or_a_quiet_spell_one_short_poll() -> None:
    poll = FakePoll([{TP1: [7]}, {TP1: [8]}])
    poll.now = 5.0  # the previous round began long ago
    got = fill(poll, {TP0: [1]}, max_events=100, until=0.050)
    assert got == {TP0: [1], TP1: [7]}
    assert poll.calls == [(5, 99)]


def test_stopping_ends_the_round_at_once() -> None:
    poll = FakePoll([{TP0: [2]}])
    assert fill(poll, {TP0: [1]}, max_events=100, until=0.050, stopping=True) == {TP0: [1]}
    assert poll.calls == []
