"""The producer SDK for compute workers: what ``pip install meterstream`` (the base, or the
``sdk`` extra) brings, with aiokafka, orjson and pydantic-settings and nothing of the
worker, the sink or the importer (tests/unit/test_architecture.py walks the imports).

- :class:`UsageProducer` (asyncio) and :class:`UsageReporter` (blocking, for threads);
- the spool's fsync policy (:data:`FsyncPolicy`) and the producer's compression choices;
- the event encoder (:func:`prepare_event`, :func:`encode_event`) and UUIDv7;
- the settings a producer is built from (:class:`KafkaSettings`, :func:`load_settings`)
  and the errors it raises.

Every name here is also importable from :mod:`streams` itself.
"""

from streams.config import KafkaSettings, load_settings
from streams.errors import EventValidationError, ProducerError
from streams.sdk.encode import EventValue, Prepared, Timestamp, encode_event, prepare_event
from streams.sdk.producer import Compression, UsageProducer
from streams.sdk.reporter import UsageReporter
from streams.sdk.spool import FsyncPolicy
from streams.sdk.uuid7 import uuid7, uuid7_str, uuid7_timestamp_ms

__all__ = [
    "Compression",
    "EventValidationError",
    "EventValue",
    "FsyncPolicy",
    "KafkaSettings",
    "Prepared",
    "ProducerError",
    "Timestamp",
    "UsageProducer",
    "UsageReporter",
    "encode_event",
    "load_settings",
    "prepare_event",
    "uuid7",
    "uuid7_str",
    "uuid7_timestamp_ms",
]
