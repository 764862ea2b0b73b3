"""Where refused rows go: the events DLQ topic (default) or a local JSON Lines file.

Both are a :class:`RejectSink`: ``write`` hands a reject over without waiting, ``flush``
returns once everything written is durable (Kafka acknowledged, or the file fsynced), so
the importer can flush it before it advances its checkpoint.

The dead letter is envelope v1 with ``stage: "import"`` and a file source::

    {"schema": "dead_letter.v1", "reason": "invalid_value", "detail": "...",
     "source": {"file": "s3://b/usage.csv", "line": 17, "key": "c-1", "index": null},
     "original_b64": "...", "failed_at_ms": 1795000123456, "stage": "import"}

keyed by the row's customer when it has a string one, with headers ``reason`` and
``source`` (the file URI). The reject file holds one JSON object per line:
``{"file", "line", "reason", "detail", "row"}`` (``row`` the offending row as text).
After a crash, rejects after the last checkpoint are written again (at-least-once, like
the rows).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from streams.config import KafkaSettings
from streams.kafka.dead_letter import dead_letter, file_source

__all__ = ["DlqRejects", "FileRejects", "Reject", "RejectSink"]


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused row: its file, row number, why, and its bytes."""

    file: str
    line: int
    reason: str
    detail: str
    original: bytes
    key: str | None


class RejectSink(Protocol):
    async def start(self) -> None: ...

    def write(self, reject: Reject) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class FileRejects:
    """Appends rejects to a local JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, reject: Reject) -> None:
        assert self._file is not None
        self._file.write(orjson.dumps({
            "file": reject.file, "line": reject.line, "reason": reject.reason,
            "detail": reject.detail,
            "row": reject.original.decode("utf-8", errors="replace"),
        }) + b"\n")

    async def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    async def close(self) -> None:
        await self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class DlqRejects:
    """Produces dead letters to the events DLQ topic (idempotent producer, acks=all)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        from aiokafka import AIOKafkaProducer

        from streams.kafka.client import connection_options

        self.topic = topic
        self._producer: Any = AIOKafkaProducer(
            **connection_options(kafka), client_id=f"{kafka.client_id}-import-dlq",
            acks="all", enable_idempotence=True, linger_ms=20)
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        await self._producer.start()

    def write(self, reject: Reject) -> None:
        headers = [("reason", reject.reason.encode()), ("source", reject.file.encode())]
        key = reject.key.encode() if reject.key is not None else None
        # send() only enqueues; the future it returns resolves on the broker's ack.
        task = asyncio.ensure_future(self._producer.send(
            self.topic, dead_letter("import", reject.reason, reject.detail,
                                    file_source(reject.file, reject.line, reject.key),
                                    reject.original),
            key=key, headers=headers))
        self._pending.append(task)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        acks = await asyncio.gather(*pending)
        await asyncio.gather(*acks)

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()
