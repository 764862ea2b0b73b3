"""Keep Faust's stall detector from logging ERROR for topics that are idle by design.

faust-streaming's consumer checks every ``2.5 x broker_commit_interval`` seconds that each
assigned partition is moving (``faust.transport.consumer.Consumer
._commit_livelock_detector`` -> ``AIOKafkaConsumerThread.verify_event_path``). For a
partition whose high-water mark is past the consumer's position and on which no *stream*
has received a message for ``stream_processing_timeout`` (5 minutes by default; Faust reads
``STREAM_PROCESSING_TIMEOUT`` from the environment), it logs at ERROR, again at every check:
``Stream has not started processing TP(topic='usage.customers', partition=0) ...``. The
customers topic is the changelog of a global table: no stream ever reads it, and it is
idle for days at a time, so that ERROR says nothing is wrong.

:func:`install` adds a filter to the logger of Faust's aiokafka driver. For the four
stream and commit stall messages (never the fetch or high-water ones, which a broker
problem raises) it lowers the record to DEBUG when the partition's topic is one of
``idle_topics``, and drops it unless DEBUG is enabled. The same messages for every other
topic, the usage events above all, stay at ERROR: a real stall of the events path is
still reported. The message texts and the logger are Faust's; the contract test
(tests/unit/test_faust_quiet.py) fails when the library changes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["FAUST_DRIVER_LOGGER", "STALL_MESSAGES", "IdleTopicStallFilter", "install"]

FAUST_DRIVER_LOGGER = "faust.transport.drivers.aiokafka"
# The first words of faust.transport.drivers.aiokafka's SLOW_PROCESSING_STREAM_IDLE*,
# SLOW_PROCESSING_NO_*COMMIT* templates; each takes the partition (a TP) as first argument.
STALL_MESSAGES = (
    "Stream has not started processing",
    "Stream stopped processing, or is slow for",
    "Has not committed",
)


class IdleTopicStallFilter(logging.Filter):
    """Demote Faust's stream stall reports for ``idle_topics`` to DEBUG (see module doc)."""

    def __init__(self, idle_topics: Iterable[str]) -> None:
        super().__init__()
        self.idle_topics = frozenset(idle_topics)
        self.demoted = 0
        """How many records were lowered (for tests and a debug metric)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        topic = getattr(args[0], "topic", None)
        if topic not in self.idle_topics:
            return True
        message = str(record.msg)
        if not any(m in message for m in STALL_MESSAGES):
            return True
        self.demoted += 1
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def install(idle_topics: Iterable[str]) -> IdleTopicStallFilter:
    """Add the filter to Faust's driver logger (replacing one added before); return it.

    Call it once per process before the Faust worker starts, with the topics that are
    idle by design (the customers topic).
    """
    logger = logging.getLogger(FAUST_DRIVER_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, IdleTopicStallFilter)]:
        logger.removeFilter(old)
    quiet = IdleTopicStallFilter(idle_topics)
    logger.addFilter(quiet)
    return quiet
