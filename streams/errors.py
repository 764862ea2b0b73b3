"""The one exception root of meterstream.

::

    MeterstreamError
    ├── ConfigError               bad configuration, raised at start (lists every bad field)
    ├── EventValidationError      (also ValueError) an event the producer SDK refuses to send
    ├── ProducerError             the producer SDK could neither send nor spool
    ├── ImportSourceError         an import source cannot be listed or read (a file, S3)
    ├── PartitionFencedError      another worker owns the partition now (its producer
    │                             fenced ours): drop the partition, write nothing for it
    └── SinkError                 pushing a summary to Stripe failed
        ├── RetryableSinkError    429, 5xx, timeouts, dropped connections: try again later
        └── PermanentSinkError    any other 4xx: the summary goes to the summaries DLQ
                                  (but 401/403, a refused key, holds every summary:
                                  streams/sink/auth.py)

Lower-layer errors (aiokafka, stripe, aiohttp) are translated at the boundary with
``raise ... from exc``. No message carries a secret: configuration errors name the setting
and what is allowed, never the value of a secret field.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EventValidationError",
    "ImportSourceError",
    "MeterstreamError",
    "PartitionFencedError",
    "PermanentSinkError",
    "ProducerError",
    "RetryableSinkError",
    "SinkError",
]


class MeterstreamError(Exception):
    """Root of every error meterstream raises on purpose."""


class ConfigError(MeterstreamError):
    """The configuration is invalid; the message lists every bad setting and what to fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class EventValidationError(MeterstreamError, ValueError):
    """An event does not satisfy the usage event v1 contract."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"invalid usage event ({reason}): {detail}")


class ProducerError(MeterstreamError):
    """The producer SDK could not hand events to Kafka or to its spool."""


class ImportSourceError(MeterstreamError):
    """``meterstream import`` cannot list or read its source (a local path or S3)."""


class PartitionFencedError(MeterstreamError):
    """A newer owner of the partition initialised its transactional producer: ours is fenced.

    The worker drops the partition at once (pauses it, discards the batch in progress,
    writes no state for it) and waits for the group to assign it again.
    """

    def __init__(self, partition: int) -> None:
        self.partition = partition
        super().__init__(f"partition {partition}: fenced by a newer owner")


class SinkError(MeterstreamError):
    """Pushing a summary to Stripe failed."""


class RetryableSinkError(SinkError):
    """A transient failure (429, 5xx, timeout, connection): the same request may succeed later."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class PermanentSinkError(SinkError):
    """Stripe refused the request for good (a 4xx other than 429 and duplicate identifier)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)
