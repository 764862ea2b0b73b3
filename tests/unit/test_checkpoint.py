"""The checkpoint's commit order and the fencing argument, on in-memory fakes of its ports.

- The order of one batch's steps is asserted call by call (core, begin, produce outputs,
  produce changelog, offsets, commit, local state).
- A hypothesis property drives two workers over one partition with a fake broker that
  implements transactions and fencing as Kafka does: ownership moves back and forth, a
  worker crashes at any step of a batch, and a "frozen" worker wakes up and tries to
  commit a batch from its stale state after the other took over. Whatever happens, the
  committed summaries (read_committed, deduplicated by id) add up to the distinct valid
  events, alerts fire once, and no zombie ever commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.aggregate import Aggregator, SourceRecord
from streams.core.state import PartitionRec, partition_key
from streams.errors import PartitionFencedError
from streams.runtime.checkpoint import BatchTopics, commit_batch
from streams.runtime.ports import OutRecord
from streams.testing.memory_state import MemoryState
from tests.unit.test_aggregate_properties import (
    CONFIG,
    billed,
    check_alerts,
    expected,
    workloads,
)

TOPICS = BatchTopics(events="ev", changelog="cl", summaries="sum", alerts="al", dlq="dlq",
                     group_id="g")


class Crash(Exception):
    """A simulated process death at one step of a batch."""


@dataclass
class FakeBroker:
    """Transactions as Kafka has them: per transactional id an epoch; a producer whose epoch
    is not the current one is fenced; a transaction's records and offsets become visible
    at commit, all together, or never."""

    logs: dict[str, list[tuple[bytes | None, bytes | None]]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)

    def log(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return self.logs.setdefault(topic, [])


class FakeTxn:
    """The Transaction port on the fake broker; ``crash_at`` raises Crash at that step."""

    def __init__(self, broker: FakeBroker, tid: str, crash_at: str | None = None) -> None:
        self.broker = broker
        self.tid = tid
        self.epoch = broker.epochs.get(tid, 0) + 1
        broker.epochs[tid] = self.epoch  # starting a producer fences every older one
        self.pending: list[tuple[str, list[OutRecord]]] = []
        self.offset: int | None = None
        self.crash_at = crash_at

    def _check(self, step: str) -> None:
        self.broker.journal.append(step)
        if self.broker.epochs[self.tid] != self.epoch:
            raise PartitionFencedError(0)
        if self.crash_at == step:
            raise Crash(step)

    async def begin(self) -> None:
        self._check("begin")
        self.pending, self.offset = [], None

    async def send(self, topic: str, records: Sequence[OutRecord], *,
                   partition: int | None = None) -> Awaitable[int]:
        self._check(f"send:{topic}")
        self.pending.append((topic, list(records)))
        broker, pending = self.broker, self.pending
        index = len(pending) - 1

        def last_offset() -> int:  # known once committed, as the real acks are
            before = sum(len(r) for t, r in pending[:index] if t == topic)
            return len(broker.log(topic)) - sum(len(r) for t, r in pending if t == topic) \
                + before + len(records) - 1

        return _Later(last_offset)

    async def flush(self) -> None:
        self._check("flush")

    async def send_offset(self, topic: str, partition: int, next_offset: int,
                          group_id: str) -> None:
        self._check("offsets")
        self.offset = next_offset

    async def commit(self) -> None:
        self._check("commit")
        for topic, records in self.pending:
            self.broker.log(topic).extend((k, v) for k, v, _h in records)
        if self.offset is not None:
            self.broker.offsets[TOPICS.group_id] = self.offset

    async def abort(self) -> None:
        self._check("abort")
        self.pending = []


class _Later:
    """Awaitable that computes its value when awaited (a batch abandoned before its commit
    never awaits it, and leaves no never-awaited coroutine behind)."""

    def __init__(self, compute: Callable[[], int]) -> None:
        self.compute = compute

    def __await__(self) -> Generator[Any, None, int]:
        if False:  # a generator that returns at once
            yield
        return self.compute()


class FakeLocal:
    """The LocalState port: a MemoryState plus the changelog offset it holds."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.mem = MemoryState()
        self.changelog_next = 0
        self.journal = journal

    @property
    def view(self) -> MemoryState:
        if self.journal is not None:
            self.journal.append("read")
        return self.mem

    def apply(self, writes: Iterable[tuple[bytes, bytes | None]], changelog_next: int) -> int:
        if self.journal is not None:
            self.journal.append("local")
        items = [(k.decode(), v) for k, v in writes]
        self.mem.apply(items)
        self.changelog_next = changelog_next
        return len(items)

    def restore(self, changelog: list[tuple[bytes | None, bytes | None]]) -> None:
        """The changelog tail past changelog_next, as streams.runtime.restore reads it."""
        tail = changelog[self.changelog_next:]
        self.mem.apply([(k.decode(), v) for k, v in tail if k is not None])
        self.changelog_next = len(changelog)


def _applied(local: FakeLocal) -> int:
    raw = local.mem.get(partition_key(0))
    return PartitionRec.decode(raw).applied if raw else -1


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


def _event(offset: int, customer: str, meter: str, value: str, ts: int) -> SourceRecord:
    body = {"id": f"e{offset}", "customer": customer, "meter": meter, "value": value,
            "timestamp": ts}
    return SourceRecord(offset, ts + 1000, customer, orjson.dumps(body))


def test_one_batch_runs_its_steps_in_the_stated_order() -> None:
    broker = FakeBroker()
    local = FakeLocal(broker.journal)
    txn = FakeTxn(broker, "t-0")
    t0 = 1_795_000_000_000
    records = [_event(0, "acme", "cpu", "600", t0), SourceRecord(1, t0, "acme", b"{"),
               # a tick an hour later closes the window: a summary
               SourceRecord(2, t0 + 7_200_000, None, None, tick_ms=t0 + 7_200_000)]
    result = _run(commit_batch(partition=0, records=records, core=Aggregator(CONFIG),
                               state=local, txn=txn, topics=TOPICS, now_ms=t0,
                               terms=lambda _c: None))
    assert result.summaries and result.alerts and result.dead_letters
    assert broker.journal[0] == "read"
    steps = [s for s in broker.journal if s != "read"]
    assert steps == ["begin", "send:sum", "send:al", "send:dlq", "send:cl", "flush",
                     "offsets", "commit", "local"]
    assert broker.offsets["g"] == 3
    # Local state reaches exactly the end of the changelog, and holds the same records.
    changelog = broker.log("cl")
    assert local.changelog_next == len(changelog)
    replayed = MemoryState()
    replayed.apply([(k.decode(), v) for k, v in changelog if k is not None])
    assert replayed.data == local.mem.data


def test_a_sweep_batch_commits_finals_and_state_and_leaves_the_input_position() -> None:
    """A batch of no records emits the finals an earlier batch left (its bound reached)."""
    broker = FakeBroker()
    local = FakeLocal(broker.journal)
    core = Aggregator(replace(CONFIG, batch_max_closes=1))
    t0 = 1_795_000_000_000
    first = [_event(i, f"c{i}", "cpu", "1", t0) for i in range(3)]
    _run(commit_batch(partition=0, records=first, core=core, state=local,
                      txn=FakeTxn(broker, "t-0"), topics=TOPICS, now_ms=t0,
                      terms=lambda _c: None))
    # An event two hours later: the three windows are due, and the bound closes one.
    result = _run(commit_batch(partition=0, records=[_event(4, "c0", "cpu", "1",
                                                            t0 + 7_200_000)],
                               core=core, state=local, txn=FakeTxn(broker, "t-0"),
                               topics=TOPICS, now_ms=t0, terms=lambda _c: None))
    assert len(result.summaries) == 1 and result.closing
    broker.journal.clear()
    sweep = _run(commit_batch(partition=0, records=[], core=core, state=local,
                              txn=FakeTxn(broker, "t-0"), topics=TOPICS, now_ms=t0,
                              terms=lambda _c: None))
    # A batch of no records takes on idle_max_closes: both finals left.
    assert len(sweep.summaries) == 2 and not sweep.closing
    assert [s for s in broker.journal if s != "read"] == [
        "begin", "send:sum", "send:cl", "flush", "commit", "local"]
    assert broker.offsets["g"] == 5
    assert local.changelog_next == len(broker.log("cl"))


@pytest.mark.parametrize("step", ["begin", "send:sum", "send:cl", "flush", "offsets",
                                  "commit"])
def test_a_failure_before_the_commit_leaves_everything_as_it_was(step: str) -> None:
    broker = FakeBroker()
    local = FakeLocal()
    t0 = 1_795_000_000_000
    records = [_event(0, "acme", "cpu", "600", t0),
               SourceRecord(1, t0 + 7_200_000, None, None, tick_ms=t0 + 7_200_000)]
    with pytest.raises(Crash):
        _run(commit_batch(partition=0, records=records, core=Aggregator(CONFIG), state=local,
                          txn=FakeTxn(broker, "t-0", crash_at=step), topics=TOPICS,
                          now_ms=t0, terms=lambda _c: None))
    assert broker.logs.get("sum", []) == [] and broker.logs.get("cl", []) == []
    assert "g" not in broker.offsets
    assert local.mem.data == {} and local.changelog_next == 0


def test_a_fenced_worker_commits_nothing_and_writes_no_state() -> None:
    broker = FakeBroker()
    zombie = FakeLocal()
    old = FakeTxn(broker, "t-0")
    FakeTxn(broker, "t-0")  # the new owner starts its producer: the old one is fenced
    t0 = 1_795_000_000_000
    with pytest.raises(PartitionFencedError):
        _run(commit_batch(partition=0, records=[_event(0, "acme", "cpu", "1", t0)],
                          core=Aggregator(CONFIG), state=zombie, txn=old, topics=TOPICS,
                          now_ms=t0, terms=lambda _c: None))
    assert broker.logs == {} and zombie.mem.data == {}


STEPS = ["begin", "send:sum", "send:cl", "offsets", "commit"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.data())
def test_two_workers_crashes_and_a_zombie_never_lose_or_double_count(
    workload: tuple[list[SourceRecord], list[Any]], data: st.DataObject
) -> None:
    """Ownership moves between two workers; batches crash at any step; a frozen owner wakes
    up after a takeover and tries to commit from its stale state. The committed log adds
    up to the distinct valid events."""
    records, distinct = workload
    broker = FakeBroker()
    core = Aggregator(CONFIG)
    locals_ = [FakeLocal(), FakeLocal()]
    txns: list[FakeTxn | None] = [None, None]
    owner = -1
    zombie_commits = 0

    def take(w: int) -> None:
        nonlocal owner
        txns[w] = FakeTxn(broker, "t-0")  # fences the other worker
        locals_[w].restore(broker.log("cl"))  # then the changelog tail
        owner = w

    async def batch(w: int, crash_at: str | None) -> bool:
        """One batch from the worker's own position; False when there was nothing left."""
        txn = txns[w]
        assert txn is not None
        txn.crash_at = crash_at
        start = _applied(locals_[w]) + 1
        n = data.draw(st.integers(1, 6), label="batch size")
        chunk = records[start:start + n]
        if not chunk:
            return False
        await commit_batch(partition=0, records=chunk, core=core, state=locals_[w], txn=txn,
                           topics=TOPICS, now_ms=start, terms=lambda _c: None)
        return True

    async def scenario() -> None:
        nonlocal zombie_commits
        take(0)
        for _ in range(data.draw(st.integers(0, 25), label="steps")):
            action = data.draw(st.sampled_from(["batch", "crash", "takeover", "zombie"]))
            if action == "batch":
                await batch(owner, None)
            elif action == "crash":
                # (A batch without summaries never reaches "send:sum" and commits.)
                with contextlib.suppress(Crash):
                    await batch(owner, data.draw(st.sampled_from(STEPS)))
                take(owner)  # the restarted worker takes its partition again
            elif action == "takeover":
                take(1 - owner)
            else:  # the previous owner wakes up with a batch read before its freeze
                stale = 1 - owner
                if txns[stale] is None:
                    continue
                before = len(broker.log("sum")), len(broker.log("cl"))
                with contextlib.suppress(PartitionFencedError):
                    zombie_commits += await batch(stale, None)
                assert (len(broker.log("sum")), len(broker.log("cl"))) == before
        while _applied(locals_[owner]) + 1 < len(records):
            await batch(owner, None)

    _run(scenario())
    assert zombie_commits == 0
    summaries = [orjson.loads(v) for _k, v in broker.log("sum") if v is not None]
    alerts = [orjson.loads(v) for _k, v in broker.log("al") if v is not None]
    want_totals, want_alerts = expected(distinct)
    assert billed(summaries) == want_totals
    check_alerts(alerts, want_alerts)
    assert broker.offsets["g"] == len(records)
