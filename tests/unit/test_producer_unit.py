"""The producer SDK without a broker: validation, UUIDv7, the spool, and the spool/replay
machinery of UsageProducer driven through its client seam by a small fake broker."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.errors import EventValidationError, ProducerError
from streams.sdk.encode import prepare_event
from streams.sdk.producer import UsageProducer, UsageReporter
from streams.sdk.spool import Position, Spool, frame
from streams.sdk.uuid7 import uuid7, uuid7_str, uuid7_timestamp_ms

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"value": 1.5}, "invalid_value"),
        ({"value": True}, "invalid_value"),
        ({"value": Decimal("NaN")}, "invalid_value"),
        ({"value": "-1"}, "invalid_value"),
        ({"value": "1e3"}, "invalid_value"),
        ({"value": "1234567890.123456"}, "too_many_digits"),
        ({"value": [1]}, "invalid_value"),
        ({"meter": "CPU"}, "invalid_meter"),
        ({"customer": ""}, "invalid_customer"),
        ({"customer": "a\nb"}, "invalid_customer"),
        ({"timestamp": datetime(2026, 1, 1)}, "invalid_timestamp"),
        ({"timestamp": 1.5}, "invalid_timestamp"),
        ({"timestamp": -1}, "invalid_timestamp"),
        ({"event_id": ""}, "invalid_id"),
        ({"attributes": {"bad key": "x"}}, "invalid_attributes"),
    ],
)
def test_prepare_rejects(kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"customer": "c-1", "meter": "cpu_seconds", "value": 1} | kwargs
    with pytest.raises(EventValidationError) as info:
        prepare_event(**args)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    assert reason in str(info.value)


def test_float_message_is_clear() -> None:
    with pytest.raises(EventValidationError, match="float"):
        prepare_event("c-1", "cpu_seconds", 0.1)


async def test_report_validates_before_anything(tmp_path: Path) -> None:
    producer = UsageProducer(topic="t", spool_dir=tmp_path)
    with pytest.raises(EventValidationError):
        await producer.report("c-1", "cpu_seconds", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ProducerError, match="not started"):
        await producer.report("c-1", "cpu_seconds", 2)


def test_prepare_encodes_wire_form() -> None:
    when = datetime(2026, 11, 1, 12, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2)))
    p = prepare_event("c-1", "cpu_seconds", Decimal("1E+3"), when, "e-1", {"region": "eu"})
    assert p.id == "e-1" and p.key == b"c-1" and p.customer == "c-1"
    assert orjson.loads(p.payload) == {
        "id": "e-1", "customer": "c-1", "meter": "cpu_seconds", "value": "1000",
        "timestamp": int(datetime(2026, 11, 1, 10, 0, 0, 999_000, tzinfo=UTC).timestamp()) * 1000
        + 999,
        "attributes": {"region": "eu"},
    }
    assert orjson.loads(prepare_event("c", "m", 7, 5).payload)["value"] == 7
    assert orjson.loads(prepare_event("c", "m", "0.25", 5).payload)["value"] == "0.25"
    generated = prepare_event("c", "m", 1)
    assert UUID_RE.match(generated.id)


# -- UUIDv7 --------------------------------------------------------------------------------


def test_uuid7_format_and_fields() -> None:
    value = uuid7_str()
    assert UUID_RE.match(value)
    parsed = uuid.UUID(value)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == value
    assert uuid7_timestamp_ms(value) == uuid7_timestamp_ms(parsed)
    assert uuid7().version == 7
    assert uuid7_timestamp_ms(uuid7_str(1_795_000_000_000)) >= 1_795_000_000_000


def test_uuid7_strictly_increasing_within_one_millisecond_and_backwards_clock() -> None:
    fixed = 1_900_000_000_000
    ids = [uuid7_str(fixed) for _ in range(10_000)]  # more than the 12-bit counter holds
    ids += [uuid7_str(fixed - 5_000) for _ in range(100)]  # the clock steps back
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)
    assert all(UUID_RE.match(i) for i in ids)
    assert uuid7_timestamp_ms(ids[0]) == fixed


def test_uuid7_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(slot: list[str]) -> None:
        slot.extend(uuid7_str() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for slot in out for i in slot]
    assert len(set(every)) == len(every)
    for slot in out:
        assert slot == sorted(slot)


# -- the spool -----------------------------------------------------------------------------


def _records(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(f"c-{i % 3}".encode(), f'{{"n":{i}}}'.encode()) for i in range(start, start + n)]


def _read_all(spool: Spool, position: Position | None = None) -> list[tuple[bytes, bytes]]:
    chunk = spool.read(position or spool.cursor, max_records=10**6, max_bytes=1 << 30)
    return chunk.records


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool", segment_max_bytes=1024)
    s.open()
    yield s
    s.close()


def test_spool_round_trip_rotation_and_reopen(spool: Spool) -> None:
    records = _records(200)
    for r in records:
        spool.append([r])
    assert len(list(spool.directory.glob("seg-*.log"))) > 1  # rotated at 1 KiB
    assert _read_all(spool) == records
    spool.close()
    again = Spool(spool.directory)
    again.open()
    assert _read_all(again) == records
    again.close()
    spool.open()


async def test_spool_cursor_survives_reopen_and_drops_old_segments(spool: Spool) -> None:
    spool.append(_records(100))
    spool.append(_records(100, 100))
    chunk = spool.read(spool.cursor, max_records=150, max_bytes=1 << 20)
    assert chunk.records == _records(150)
    await spool.commit(chunk.ends[-1])
    spool.close()
    reopened = Spool(spool.directory)
    reopened.open()
    assert _read_all(reopened) == _records(50, 150)  # acknowledged records never come back
    chunk = reopened.read(reopened.cursor, max_records=10**6, max_bytes=1 << 20)
    await reopened.commit(chunk.end)
    assert reopened.reset_if_drained()
    assert not list(reopened.directory.glob("seg-*.log"))
    reopened.append(_records(1, 999))
    assert _read_all(reopened) == _records(1, 999)
    reopened.close()
    spool.open()


def test_spool_cuts_a_torn_tail(spool: Spool) -> None:
    spool.append(_records(10))
    spool.close()
    [segment] = spool.directory.glob("seg-*.log")
    whole = segment.read_bytes()
    segment.write_bytes(whole + frame(b"c-1", b'{"torn":true}')[:-3])  # a crash mid-write
    reopened = Spool(spool.directory)
    reopened.open()
    assert _read_all(reopened) == _records(10)
    assert segment.read_bytes() == whole
    reopened.close()
    spool.open()


def test_spool_cuts_at_a_corrupt_record(spool: Spool) -> None:
    spool.append(_records(3))
    spool.close()
    [segment] = spool.directory.glob("seg-*.log")
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF  # flip a byte of the last record's value
    segment.write_bytes(bytes(data))
    reopened = Spool(spool.directory)
    reopened.open()
    assert _read_all(reopened) == _records(2)
    reopened.close()
    spool.open()


def test_spool_is_locked_to_one_owner(spool: Spool) -> None:
    with pytest.raises(ProducerError, match="in use"):
        Spool(spool.directory).open()


def test_rescue_segment_sorts_first_blocks_until_sealed_and_skips_delivered(
    spool: Spool,
) -> None:
    spool.append(_records(2))
    rescue = spool.begin_episode()
    spool.append(_records(2, 10))  # reported after the rescued records
    delivered = rescue.append_framed(b"".join(frame(k, v) for k, v in _records(2, 5)))
    rescue.append_framed(b"".join(frame(k, v) for k, v in _records(2, 7)))
    assert _read_all(spool) == _records(2)  # stops before the unsealed rescue
    assert spool.has_data_after(spool.read(spool.cursor, max_records=99, max_bytes=1 << 20).end)
    rescue.mark_delivered(delivered)
    rescue.seal()
    assert _read_all(spool) == _records(2) + _records(2, 7) + _records(2, 10)


# -- the producer through its client seam --------------------------------------------------


class FakeBuilder:
    def __init__(self, max_records: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.closed = False
        self.max_records = max_records

    def append(self, *, timestamp: float | None, key: bytes, value: bytes) -> object:
        if self.closed or len(self.records) >= self.max_records:
            return None
        self.records.append((key, value))
        return True

    def close(self) -> None:
        self.closed = True


class FakeBroker:
    """``up``: acknowledges at once; ``down``: refuses connections and sends; ``hang``:
    accepts batches but acknowledges nothing until :meth:`release` or :meth:`fail`;
    ``stall``: ``send_batch`` itself does not return while stalled (aiokafka waiting for
    room in its queue), then takes the batch as the state then says."""

    def __init__(self, state: str = "up", partitions: int = 3) -> None:
        self.unstalled = asyncio.Event()  # set whenever the state is not ``stall``
        self.state = state
        self.partitions = partitions
        self.log: list[tuple[int, bytes, bytes]] = []
        self.pending: list[tuple[asyncio.Future[None], int, list[tuple[bytes, bytes]]]] = []
        self.ack_budget: int | None = None  # acknowledge this many batches, then hang

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state
        if state == "stall":
            self.unstalled.clear()
        else:
            self.unstalled.set()

    def client(self, **options: Any) -> FakeClient:
        assert options["enable_idempotence"] is True and options["acks"] == "all"
        return FakeClient(self)

    def release(self) -> None:
        for future, partition, records in self.pending:
            if not future.done():
                self.log.extend((partition, k, v) for k, v in records)
                future.set_result(None)
        self.pending.clear()

    def fail(self) -> None:
        for future, _, _ in self.pending:
            if not future.done():
                future.set_exception(KafkaConnectionError())
        self.pending.clear()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for _, key, value in self.log:
            decoded = orjson.loads(value)
            for event in decoded if isinstance(decoded, list) else [decoded]:
                assert event["customer"].encode() == key
                out.append(event)
        return out


class FakeClient:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        if self.broker.state == "down":
            raise KafkaConnectionError("fake broker down")

    async def stop(self) -> None:
        self.broker.fail()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.broker.partitions))

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(max_records=50)

    async def send_batch(self, batch: FakeBuilder, topic: str, *, partition: int
                         ) -> asyncio.Future[None]:
        broker = self.broker
        if broker.state == "stall":
            await broker.unstalled.wait()
        if broker.state == "down":
            raise KafkaTimeoutError()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if broker.state == "hang" or broker.ack_budget == 0:
            broker.pending.append((future, partition, batch.records))
            return future
        if broker.ack_budget is not None:
            broker.ack_budget -= 1
        broker.log.extend((partition, k, v) for k, v in batch.records)
        future.set_result(None)
        return future


def _producer(broker: FakeBroker, spool_dir: Path, **options: Any) -> UsageProducer:
    defaults: dict[str, Any] = {
        "spool_dir": spool_dir, "client_factory": broker.client, "linger_ms": 1,
        "unreachable_after_s": 0.2, "close_timeout_s": 1.0, "replay_chunk_records": 40,
        "retry_backoff_max_s": 0.05, "fsync_interval_ms": 10,
    }
    return UsageProducer(topic="usage.events", **(defaults | options))


async def _report(producer: UsageProducer, n: int, start: int = 0) -> list[str]:
    return [
        await producer.report(f"c-{i % 4}", "cpu_seconds", i, timestamp=1_795_000_000_000 + i)
        for i in range(start, start + n)
    ]


async def _until(condition: Any, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def _assert_exactly_once_in_order(broker: FakeBroker, ids: list[str]) -> None:
    events = broker.events()
    got = [e["id"] for e in events]
    assert sorted(got) == sorted(ids), "every event exactly once"
    for customer in {e["customer"] for e in events}:
        mine = [e["timestamp"] for e in events if e["customer"] == customer]
        assert mine == sorted(mine), f"order of {customer} kept"


@pytest.mark.parametrize("pack", [False, True])
async def test_direct_delivery(tmp_path: Path, pack: bool) -> None:
    broker = FakeBroker()
    async with _producer(broker, tmp_path, pack=pack, pack_max_events=7) as producer:
        ids = await _report(producer, 500)
        await producer.flush()
        assert not producer.spooling
    _assert_exactly_once_in_order(broker, ids)
    assert all(p in range(3) for p, _, _ in broker.log)
    if pack:
        assert len(broker.log) < 500


async def test_broker_down_at_start_spools_then_replays_in_order(tmp_path: Path) -> None:
    broker = FakeBroker("down")
    async with _producer(broker, tmp_path) as producer:
        assert producer.spooling
        ids = await _report(producer, 300)
        await producer.flush()
        assert _segments(tmp_path) and not broker.log
        broker.state = "up"
        await _until(lambda: not producer.spooling)
        ids += await _report(producer, 100, 300)  # direct again
    _assert_exactly_once_in_order(broker, ids)
    assert not _segments(tmp_path)


@pytest.mark.parametrize("outcome", ["acknowledged", "failed"])
async def test_in_flight_batches_are_rescued_without_duplicates(
    tmp_path: Path, outcome: str
) -> None:
    broker = FakeBroker()
    async with _producer(broker, tmp_path) as producer:
        ids = await _report(producer, 100)
        await producer.flush()
        broker.state = "hang"
        ids += await _report(producer, 200, 100)
        await _until(lambda: producer.spooling)  # no acknowledgement within 0.2 s
        ids += await _report(producer, 200, 300)
        await producer.flush()  # durable in the spool although Kafka holds batches
        assert broker.pending
        broker.state = "up"
        if outcome == "acknowledged":
            broker.release()  # Kafka had them after all: replay must skip them
        else:
            broker.fail()  # they are lost in Kafka: replay sends the rescued copies
        await _until(lambda: not producer.spooling)
    _assert_exactly_once_in_order(broker, ids)


async def test_a_send_that_does_not_return_is_spooled_then_delivered_once(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    async with _producer(broker, tmp_path) as producer:
        ids = await _report(producer, 100)
        await producer.flush()
        broker.state = "stall"
        ids += await _report(producer, 200, 100)
        await _until(lambda: producer.spooling)  # no acknowledgement within 0.2 s
        await producer.flush()  # durable in the spool
        assert not broker.pending
        broker.state = "up"
        await _until(lambda: not producer.spooling)
    _assert_exactly_once_in_order(broker, ids)


async def test_spool_survives_close_and_a_new_producer_replays(tmp_path: Path) -> None:
    broker = FakeBroker("down")
    async with _producer(broker, tmp_path) as producer:
        ids = await _report(producer, 250)
    assert producer.spool.pending_bytes > 0
    broker.state = "up"
    async with _producer(broker, tmp_path) as again:
        assert again.spooling  # the spool is not empty: it goes first
        ids += await _report(again, 50, 250)
        await _until(lambda: not again.spooling)
    _assert_exactly_once_in_order(broker, ids)


async def test_replay_cut_short_resends_only_the_unacknowledged_tail(tmp_path: Path) -> None:
    broker = FakeBroker("down", partitions=1)
    async with _producer(broker, tmp_path) as producer:
        ids = await _report(producer, 400)
    # Kafka comes back but dies again after 4 batches (of at most 50 records; a chunk is
    # 120 records), so the second chunk is partly acknowledged; the producer then stops.
    broker.state = "up"
    broker.ack_budget = 4
    async with _producer(broker, tmp_path, close_timeout_s=0.3,
                         replay_chunk_records=120) as producer:
        await _until(lambda: broker.pending)
    assert len(broker.events()) == 120 + 50  # chunk 1 (batches 50+50+20), half of chunk 2
    assert (tmp_path / "cursor").read_text().split() != ["0", "0"]
    broker.ack_budget = None
    async with _producer(broker, tmp_path) as producer:
        await _until(lambda: not producer.spooling)
    _assert_exactly_once_in_order(broker, ids)


async def test_crash_during_replay_is_at_least_once(tmp_path: Path) -> None:
    """A crash (no close) after acknowledgements but before the cursor moved: the
    unacknowledged-by-cursor tail comes again, nothing is missing."""
    broker = FakeBroker("down", partitions=1)
    async with _producer(broker, tmp_path) as producer:
        ids = await _report(producer, 100)
    broker.state = "up"
    broker.ack_budget = 1
    crashed = _producer(broker, tmp_path, replay_chunk_records=120)
    await crashed.start()
    await _until(lambda: broker.pending)
    for task in crashed._delivery._tasks:  # the process dies: no close, no cursor update
        task.cancel()
    crashed.spool.close()
    broker.fail()
    broker.ack_budget = None
    async with _producer(broker, tmp_path) as producer:
        await _until(lambda: not producer.spooling)
    got = [e["id"] for e in broker.events()]
    assert set(got) == set(ids)
    assert len(got) == 150  # the first batch of 50 twice: at least once, by id


def test_reporter_from_threads(tmp_path: Path) -> None:
    broker = FakeBroker()
    reporter = UsageReporter(topic="usage.events", spool_dir=tmp_path,
                             client_factory=broker.client, linger_ms=1)
    ids: list[list[str]] = [[] for _ in range(3)]

    def work(slot: list[str], n: int) -> None:
        for i in range(200):
            call = reporter.report if i % 2 else reporter.report_nowait
            slot.append(call(f"c-{n}", "cpu_seconds", i, timestamp=1_795_000_000_000 + i))

    threads = [threading.Thread(target=work, args=(slot, n)) for n, slot in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(EventValidationError):
        reporter.report("c-1", "cpu_seconds", 0.5)  # type: ignore[arg-type]
    assert reporter.flush(timeout_s=10)
    reporter.close()
    reporter.close()  # idempotent
    with pytest.raises(ProducerError, match="closed"):
        reporter.report_nowait("c-1", "cpu_seconds", 1)
    _assert_exactly_once_in_order(broker, [i for slot in ids for i in slot])


def test_reporter_context_manager_flushes_on_exit(tmp_path: Path) -> None:
    broker = FakeBroker()
    with UsageReporter(topic="usage.events", spool_dir=tmp_path,
                       client_factory=broker.client, pack=True) as reporter:
        ids = [reporter.report_nowait("c-1", "gpu_seconds", "0.5") for _ in range(1000)]
    _assert_exactly_once_in_order(broker, ids)
    assert len(broker.log) < 1000  # packed
