"""The one builder of a dead-letter envelope v1 (schemas/dead_letter.v1.json): the value of
every record on usage.events.dlq (stages ``aggregator`` and ``import``) and
usage.summaries.dlq (stage ``sink``).

The envelope's keys come in the schema's order, ``detail`` is cut to the schema's 500
characters, the original bytes are standard base64 with padding, and the source is either
a Kafka record (:func:`kafka_source`) or a file row (:func:`file_source`). The record's
key and its ``reason`` / ``source`` headers stay with the writers: each stage labels its
source its own way.
"""

from __future__ import annotations

import base64
import time
from typing import Literal

import orjson

__all__ = ["DETAIL_MAX_CHARS", "Stage", "dead_letter", "file_source", "kafka_source"]

Stage = Literal["aggregator", "sink", "import"]
DETAIL_MAX_CHARS = 500
Source = dict[str, str | int | None]


def kafka_source(topic: str, partition: int, offset: int, key: str | None,
                 index: int | None = None) -> Source:
    """Where a Kafka record came from; ``index``: the event's place in a packed record."""
    return {"topic": topic, "partition": partition, "offset": offset, "key": key,
            "index": index}


def file_source(file: str, line: int, key: str | None) -> Source:
    """Where a file row came from (``meterstream import``): its URI and 1-based row."""
    return {"file": file, "line": line, "key": key, "index": None}


def dead_letter(
    stage: Stage,
    reason: str,
    detail: str,
    source: Source,
    original: bytes,
    *,
    failed_at_ms: int | None = None,
) -> bytes:
    """The envelope as JSON bytes; ``failed_at_ms`` defaults to now (epoch ms)."""
    return orjson.dumps({
        "schema": "dead_letter.v1",
        "reason": reason,
        "detail": detail[:DETAIL_MAX_CHARS],
        "source": source,
        "original_b64": base64.b64encode(original).decode("ascii"),
        "failed_at_ms": (failed_at_ms if failed_at_ms is not None
                         else time.time_ns() // 1_000_000),
        "stage": stage,
    })
