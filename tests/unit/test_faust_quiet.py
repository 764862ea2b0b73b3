"""Faust's stall ERROR for an idle customers topic is lowered, the events path's is not
(issue 13, item 4). Also the contract with faust-streaming: the logger and the message
texts the filter matches are the library's own."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams.runtime.faust_quiet import FAUST_DRIVER_LOGGER, STALL_MESSAGES, install


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def faust_log() -> Iterator[Collect]:
    logger = logging.getLogger(FAUST_DRIVER_LOGGER)
    handler, level, filters = Collect(), logger.level, list(logger.filters)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.filters[:] = filters


def test_the_contract_with_faust() -> None:
    assert driver.AIOKafkaConsumerThread.logger.name == FAUST_DRIVER_LOGGER
    templates = (driver.SLOW_PROCESSING_STREAM_IDLE_SINCE_START,
                 driver.SLOW_PROCESSING_STREAM_IDLE,
                 driver.SLOW_PROCESSING_NO_COMMIT_SINCE_START,
                 driver.SLOW_PROCESSING_NO_RECENT_COMMIT)
    for template in templates:
        assert template.startswith(STALL_MESSAGES), template
        assert template.count("%r") == 1 and template.index("%r") < template.index("%s")
    # The fetch-level reports are not matched: a broker problem stays an ERROR.
    for template in (driver.SLOW_PROCESSING_NO_RECENT_FETCH,
                     driver.SLOW_PROCESSING_NO_HIGHWATER_SINCE_START):
        assert not template.startswith(STALL_MESSAGES)


def _stall(tp: TP) -> None:
    # As AIOKafkaConsumerThread._log_slow_processing logs it (its CompositeLogger prefixes
    # the service label and appends the explanation).
    message = (f"[^--AIOKafkaConsumerThread]: {driver.SLOW_PROCESSING_STREAM_IDLE_SINCE_START}"
               " There are multiple possible explanations for this: ...")
    logging.getLogger(FAUST_DRIVER_LOGGER).error(message, tp, "5 minutes ago")


def test_idle_customers_topic_is_not_an_error(faust_log: Collect) -> None:
    _stall(TP("usage.customers", 0))
    assert [r.levelname for r in faust_log.records] == ["ERROR"]  # what the issue saw
    faust_log.records.clear()
    quiet = install(["usage.customers"])
    _stall(TP("usage.customers", 0))
    assert faust_log.records == [] and quiet.demoted == 1


def test_a_stalled_events_path_is_still_an_error(faust_log: Collect) -> None:
    install(["usage.customers"])
    _stall(TP("usage.events", 3))
    logging.getLogger(FAUST_DRIVER_LOGGER).error(
        driver.SLOW_PROCESSING_NO_RECENT_FETCH, TP("usage.customers", 0), "6 minutes ago")
    assert [(r.levelname, r.args[0].topic) for r in faust_log.records] == [  # type: ignore[index]
        ("ERROR", "usage.events"), ("ERROR", "usage.customers")]


def test_debug_keeps_the_line_at_debug(faust_log: Collect) -> None:
    logging.getLogger(FAUST_DRIVER_LOGGER).setLevel(logging.DEBUG)
    install(["usage.customers"])
    install(["usage.customers"])  # idempotent: one filter
    _stall(TP("usage.customers", 1))
    assert [r.levelname for r in faust_log.records] == ["DEBUG"]
