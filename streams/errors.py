"""The one exception root of meterstream.

::

    MeterstreamError
    ├── ConfigError               bad configuration, raised at start (lists every bad field)
    ├── EventValidationError      (also ValueError) an event the producer SDK refuses to send
    ├── ProducerError             the producer SDK could neither send nor spool
    ├── ImportSourceError         an import source cannot be listed or read (a file, S3)
    ├── PartitionFencedError      another worker owns the partition now (its producer
    │                             fenced ours): drop the partition, write nothing for it
    ├── SinkError                 pushing a summary to the billing engine failed
    │   ├── RetryableSinkError    429, 5xx, timeouts, dropped connections: try again later
    │   │   └── HeldForAuthError  a call refused for the key (401/403): held, retried after
    │   │                         retry_after_s, never dead-lettered (streams/sink/auth.py)
    │   ├── PermanentSinkError    any other 4xx: the summary goes to the summaries DLQ
    │   └── PlanError             a summary that can never be sent (its value, its age):
    │                             the summaries DLQ with its ``reason``, no call made
    ├── WebhookRejectedError      ``alerts tail --webhook``: a 4xx that retrying cannot fix
    ├── StripeSetupError          Stripe test mode cannot run the demo (live key, meters)
    ├── FakeServerError           the fake Stripe and fake Metronome servers (streams/fakes/)
    │   ├── ApiError              an error answer in Stripe's shape (fakes/stripe/wire.py)
    │   ├── DuplicateIdentifierError  the fake Stripe ledger has the identifier already
    │   ├── UnknownIdentifierError    the fake Stripe ledger has no such identifier
    │   └── MetronomeApiError     an error answer in Metronome's shape (fakes/metronome/api.py)
    ├── KafkaLocalError           the local broker could not be fetched, started or
    │                             stopped (streams/kafka/local/jars.py)
    ├── BrokerNotReady            (also aiokafka's KafkaConnectionError) Kafka answered
    │                             with no broker yet: starting (streams/kafka/compat.py)
    └── the test harness's: HelmMissingError, HelmError (the chart's offline checks)

Every class is defined here except those whose code needs a library the SDK does not
install (the fakes' error answers build aiohttp responses), the local broker's, the one
that is also an aiokafka error and the test harness's; they subclass the class named
above them where they are defined. A unit test (tests/unit/test_errors.py) fails when an
exception class in ``streams`` is not under :class:`MeterstreamError` or not drawn here.

Lower-layer errors (aiokafka, stripe, aiohttp) are translated at the boundary with
``raise ... from exc``. No message carries a secret: configuration errors name the setting
and what is allowed, never the value of a secret field.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EventValidationError",
    "FakeServerError",
    "HeldForAuthError",
    "ImportSourceError",
    "MeterstreamError",
    "PartitionFencedError",
    "PermanentSinkError",
    "PlanError",
    "ProducerError",
    "RetryableSinkError",
    "SinkError",
    "StripeSetupError",
    "WebhookRejectedError",
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
    """Pushing a summary to the billing engine failed."""


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


class HeldForAuthError(RetryableSinkError):
    """A call refused for the key: retried after ``retry_after_s``, never dead-lettered."""


class PlanError(SinkError):
    """A summary that can never be sent: it goes to the summaries DLQ with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:500]
        super().__init__(f"{reason}: {self.detail}")


class WebhookRejectedError(MeterstreamError):
    """The webhook answered a 4xx that retrying cannot fix."""


class StripeSetupError(MeterstreamError):
    """Stripe test mode cannot run the demo (live key, missing meters, API error)."""


class FakeServerError(MeterstreamError):
    """Raised inside the fake Stripe and fake Metronome servers (streams/fakes/): an error
    answer for the client, or a ledger refusal the fake turns into one."""
