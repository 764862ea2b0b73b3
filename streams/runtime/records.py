"""Records at the edges of the core: Kafka records in, the core's outputs out as records.

- :func:`source_record_from_kafka`: an aiokafka ``ConsumerRecord`` of usage.events as the
  core's :class:`~streams.core.aggregate.SourceRecord` (tick records are recognised by
  their header).
- :func:`output_records`: a batch's summaries, alerts and dead letters as (key, value,
  headers) records per output topic, in the order the core produced them.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.core.aggregate import BatchResult, SourceRecord
from streams.core.events import MAX_TIMESTAMP_MS
from streams.kafka.dead_letter import dead_letter, kafka_source
from streams.runtime.ports import OutRecord

__all__ = ["TICK_HEADER", "output_records", "source_record_from_kafka"]

TICK_HEADER = "meterstream-tick"


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
        source = kafka_source(events_topic, partition, dl.offset, dl.key, dl.index)
        dead.append((
            dl.key.encode() if dl.key is not None else None,
            dead_letter("aggregator", dl.reason, dl.detail, source, dl.original,
                        failed_at_ms=now_ms),
            (("reason", dl.reason.encode()),
             ("source", f"{events_topic}/{partition}/{dl.offset}".encode())),
        ))
    return summaries, alerts, dead
