"""The one dead-letter builder (streams.kafka.dead_letter) against schemas/dead_letter.v1.json,
for each stage, as each writer calls it (the worker's outputs, the sink's DLQ writer, the
importer's DLQ rejects), and byte for byte against the envelope the writers produced
before they shared it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from streams.config import KafkaSettings
from streams.core.aggregate import BatchResult, DeadLetter
from streams.importer.rejects import DlqRejects, Reject
from streams.kafka.dead_letter import DETAIL_MAX_CHARS, dead_letter, file_source, kafka_source
from streams.runtime.records import output_records
from streams.sink.kafka_io import DeadLetterWriter, Source

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "dead_letter.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def valid(value: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads(value)
    errors = [e.message for e in VALIDATOR.iter_errors(envelope)]
    assert not errors, errors
    return envelope


class _RecordingProducer:
    """Stands in for AIOKafkaProducer: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes | None,
                            headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, value, key, headers))

    async def send(self, topic: str, value: bytes, *, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, value, key, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_each_stage_and_source_validates() -> None:
    cases = [
        ("aggregator", kafka_source("usage.events", 3, 17, "c-1", 2)),
        ("aggregator", kafka_source("usage.events", 0, 0, None)),
        ("sink", kafka_source("usage.summaries", 1, 9, "c-1")),
        ("import", file_source("s3://bucket/usage.csv", 12, "c-1")),
        ("import", file_source("file:///data/u.jsonl", 1, None)),
    ]
    for stage, source in cases:
        for original in (b"", b"x", b"xy", b"{\"id\": 1}", bytes(range(256))):
            envelope = valid(dead_letter(stage, "invalid_json", "not JSON", source, original,
                                         failed_at_ms=1_795_000_000_000))
            assert envelope["stage"] == stage and envelope["source"] == source
            assert base64.b64decode(envelope["original_b64"]) == original


def test_detail_is_cut_to_the_schema_limit() -> None:
    value = dead_letter("sink", "stripe_rejected", "x" * 2000,
                        kafka_source("usage.summaries", 0, 1, "c"), b"{}", failed_at_ms=1)
    assert len(valid(value)["detail"]) == DETAIL_MAX_CHARS


def test_failed_at_defaults_to_now() -> None:
    before = time.time_ns() // 1_000_000
    envelope = valid(dead_letter("import", "invalid_value", "d", file_source("f", 1, None),
                                 b"row"))
    assert before <= envelope["failed_at_ms"] <= time.time_ns() // 1_000_000


def test_wire_form_is_unchanged() -> None:
    """The bytes the three builders produced before there was one (key order, base64)."""
    value = dead_letter("aggregator", "too_old", "event older than the horizon",
                        kafka_source("usage.events", 2, 40, "acme", None), b"{\"a\":1}",
                        failed_at_ms=1795000123456)
    assert value == (
        b'{"schema":"dead_letter.v1","reason":"too_old",'
        b'"detail":"event older than the horizon","source":{"topic":"usage.events",'
        b'"partition":2,"offset":40,"key":"acme","index":null},"original_b64":"eyJhIjoxfQ==",'
        b'"failed_at_ms":1795000123456,"stage":"aggregator"}')
    value = dead_letter("import", "invalid_value", "bad", file_source("s3://b/u.csv", 17, "c-1"),
                        b"x", failed_at_ms=5)
    assert value == (
        b'{"schema":"dead_letter.v1","reason":"invalid_value","detail":"bad",'
        b'"source":{"file":"s3://b/u.csv","line":17,"key":"c-1","index":null},'
        b'"original_b64":"eA==","failed_at_ms":5,"stage":"import"}')
    value = dead_letter("sink", "stripe_rejected", "HTTP 400",
                        kafka_source("usage.summaries", 1, 5, "c-9"), b"{}", failed_at_ms=3)
    assert value == (
        b'{"schema":"dead_letter.v1","reason":"stripe_rejected","detail":"HTTP 400",'
        b'"source":{"topic":"usage.summaries","partition":1,"offset":5,"key":"c-9",'
        b'"index":null},"original_b64":"e30=","failed_at_ms":3,"stage":"sink"}')


def test_the_worker_dead_letters_through_it() -> None:
    result = BatchResult(dead_letters=[
        DeadLetter(key="c-1", reason="invalid_value", detail="value is a float", offset=7,
                   index=1, original=b'{"value": 1.5}'),
        DeadLetter(key=None, reason="invalid_json", detail="not JSON", offset=8, index=None,
                   original=b"\xff"),
    ])
    _, _, dead = output_records(result, events_topic="usage.events", partition=4,
                                now_ms=1_795_000_000_000)
    assert [key for key, _, _ in dead] == [b"c-1", None]
    first = valid(dead[0][1])
    assert first["stage"] == "aggregator" and first["failed_at_ms"] == 1_795_000_000_000
    assert first["source"] == kafka_source("usage.events", 4, 7, "c-1", 1)
    assert dead[0][2] == (("reason", b"invalid_value"), ("source", b"usage.events/4/7"))
    assert valid(dead[1][1])["source"]["key"] is None


async def test_the_sink_dead_letters_through_it() -> None:
    writer = DeadLetterWriter(KafkaSettings(), "usage.summaries.dlq")
    recording = _RecordingProducer()
    writer._producer = recording
    await writer.write(Source("usage.summaries", 1, 5, "c-9"), b'{"id":"s"}',
                       "stripe_rejected", "HTTP 400")
    [(topic, value, key, headers)] = recording.sent
    envelope = valid(value)
    assert (topic, key, envelope["stage"]) == ("usage.summaries.dlq", b"c-9", "sink")
    assert envelope["source"] == kafka_source("usage.summaries", 1, 5, "c-9")
    assert headers == [("reason", b"stripe_rejected"), ("source", b"usage.summaries")]


async def test_the_importer_dead_letters_through_it() -> None:
    rejects = DlqRejects(KafkaSettings(), "usage.events.dlq")
    recording = _RecordingProducer()
    rejects._producer = recording
    rejects.write(Reject("s3://b/u.csv", 3, "invalid_value", "value is -1", b"c-1,-1",
                         "c-1"))
    await rejects.flush()
    [(topic, value, key, headers)] = recording.sent
    envelope = valid(value)
    assert (topic, key, envelope["stage"]) == ("usage.events.dlq", b"c-1", "import")
    assert envelope["source"] == file_source("s3://b/u.csv", 3, "c-1")
    assert headers == [("reason", b"invalid_value"), ("source", b"s3://b/u.csv")]


@pytest.mark.parametrize("stage", ["aggregator", "sink", "import"])
def test_a_wrong_source_for_the_schema_is_caught(stage: str) -> None:
    """The schema check has teeth: a source of neither shape fails it."""
    value = dead_letter(stage, "invalid_json", "d",  # type: ignore[arg-type]
                        {"topic": "t"}, b"", failed_at_ms=1)
    assert list(VALIDATOR.iter_errors(orjson.loads(value)))
