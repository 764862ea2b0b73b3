"""Records at the edges of the core: Kafka records in, the core's outputs out as records.

- :func:`source_record_from_kafka`: an aiokafka ``ConsumerRecord`` of usage.events as the
  core's :class:`~streams.core.aggregate.SourceRecord` (tick records are recognised by
  their header).
- :func:`output_records`: a batch's summaries, alerts and dead letters as (key, value,
  headers) records per output topic, in the order the core produced them.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from streams.core.aggregate import BatchResult, DeadLetter, SourceRecord
from streams.core.events import MAX_TIMESTAMP_MS
from streams.runtime.ports import OutRecord

__all__ = ["TICK_HEADER", "dead_letter_envelope", "output_records", "source_record_from_kafka"]

TICK_HEADER = "meterstream-tick"


def dead_letter_envelope(
    dl: DeadLetter, *, topic: str, partition: int, stage: str, now_ms: int
) -> dict[str, Any]:
    """A dead-letter envelope v1 (schemas/dead_letter.v1.json)."""
    return {
        "schema": "dead_letter.v1",
        "reason": dl.reason,
        "detail": dl.detail,
        "source": {"topic": topic, "partition": partition, "offset": dl.offset,
                   "key": dl.key, "index": dl.index},
        "original_b64": base64.b64encode(dl.original).decode(),
        "failed_at_ms": now_ms,
        "stage": stage,
    }


def _tick_of(headers: Any) -> int | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name == TICK_HEADER:
            # Only the worker writes ticks, but anyone who may produce to the topic can set
            # the header: one that is not epoch ms makes the record an ordinary one, which
            # the core then judges (an empty value is a dead letter, invalid_json).
            try:
                tick = int(value)
            except (TypeError, ValueError):
                return None
            return tick if 0 <= tick <= MAX_TIMESTAMP_MS else None
    return None


def source_record_from_kafka(msg: Any) -> SourceRecord:
    """From an aiokafka ConsumerRecord (timestamp in ms). On the per-record path."""
    key = msg.key
    headers = msg.headers
    return SourceRecord(msg.offset, msg.timestamp,
                        key.decode("utf-8", "replace") if key is not None else None,
                        msg.value, _tick_of(headers) if headers else None)


def output_records(
    result: BatchResult, *, events_topic: str, partition: int, now_ms: int
) -> tuple[list[OutRecord], list[OutRecord], list[OutRecord]]:
    """(summaries, alerts, dead letters) of one partition's batch, keyed by customer."""
    summaries: list[OutRecord] = [
        (s["customer"].encode(), orjson.dumps(s), ()) for s in result.summaries]
    alerts: list[OutRecord] = [
        (a["customer"].encode(), orjson.dumps(a), ()) for a in result.alerts]
    dead: list[OutRecord] = []
    for dl in result.dead_letters:
        envelope = dead_letter_envelope(dl, topic=events_topic, partition=partition,
                                        stage="aggregator", now_ms=now_ms)
        dead.append((
            dl.key.encode() if dl.key is not None else None,
            orjson.dumps(envelope),
            (("reason", dl.reason.encode()),
             ("source", f"{events_topic}/{partition}/{dl.offset}".encode())),
        ))
    return summaries, alerts, dead
