"""meterstream: exact usage metering from Kafka to Stripe.

The package's public names are the producer SDK's (:mod:`streams.sdk`), re-exported
lazily: ``import streams`` imports nothing else, and ``from streams import UsageProducer``
imports the SDK only (never the worker's faust and rocksdict, nor the sink's stripe).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.sdk import *  # for type checkers; at run time, __getattr__ below

# The same names as streams.sdk.__all__, written out because reading them would import
# the SDK (tests/unit/test_exports.py keeps the two equal).
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("streams.sdk"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
