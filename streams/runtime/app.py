"""The Faust app: topics, the state table, the customers global table, agent and timer.

This package is the only importer of faust. It wires the pure core
(:mod:`streams.core.aggregate`) to Kafka; it holds no aggregation logic of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import faust

from streams.config import Settings, effective_max_age_ms
from streams.core.aggregate import Aggregator, CoreConfig
from streams.core.pricing import MeterRule
from streams.kafka_client import connection_options, ssl_context
from streams.runtime.gaps import BrokerReader
from streams.runtime.processor import TICK_HEADER, BatchProcessor, source_record_from_kafka
from streams.runtime.state_size import SAMPLE_EVERY_S, directory_size_bytes
from streams.runtime.state_store import StateStore

__all__ = ["Components", "build_app", "core_config"]

log = logging.getLogger(__name__)

STATE_TABLE = "state"
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                       "key_serializer": "raw", "value_serializer": "raw"}
TABLE_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes}  # bytes means raw


def core_config(settings: Settings) -> CoreConfig:
    """The core's view of the settings: ms and exact Decimals."""
    a = settings.aggregator
    return CoreConfig(
        meters={m.name: MeterRule(m.name, m.aggregation, m.unit_price_minor)
                for m in settings.meters},
        window_ms=a.window_s * 1000,
        grace_ms=a.grace_s * 1000,
        dedup_horizon_ms=a.dedup_horizon_s * 1000,
        idle_bound_ms=a.idle_close_after_s * 1000,
        max_future_ms=a.max_future_s * 1000,
        max_age_ms=effective_max_age_ms(settings),
        default_thresholds=a.thresholds_minor,
        currency=a.currency,
    )


def _broker_credentials(settings: Settings) -> Any:
    k = settings.kafka
    context = ssl_context(k)
    if k.security_protocol.startswith("SASL_"):
        assert k.sasl_password is not None and k.sasl_mechanism is not None
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value(),
            mechanism=k.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class CustomersTable(faust.GlobalTable):
    """A global table whose changelog is our own compacted customers topic.

    faust 0.15.3's partition assignor finds a global table's changelog by the default
    name (``{app}-{table}-changelog``) even when a custom changelog topic is given, and
    the group never finishes rebalancing. Answer with the real topic's name.
    """

    def _changelog_topic_name(self) -> str:
        if self._changelog_topic is not None:
            name: str = self._changelog_topic.get_topic_name()
            return name
        default: str = super()._changelog_topic_name()
        return default


@dataclass
class _Outputs:
    summaries: Any
    alerts: Any
    dlq: Any


@dataclass
class Components:
    """What build_app wired, for the worker entry point, the web views and tests."""

    app: faust.App
    state: Any
    customers: Any
    events_topic: Any
    processor: BatchProcessor
    settings: Settings
    gap_reader: BrokerReader


def build_app(settings: Settings) -> Components:
    """Build the Faust app for ``settings``. Nothing connects until the worker starts."""
    w, t, a = settings.worker, settings.topics, settings.aggregator
    app = faust.App(
        w.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=_broker_credentials(settings),
        broker_client_id=settings.kafka.client_id,
        store="rocksdb://",
        datadir=str(w.state_dir),
        table_standby_replicas=w.standby_replicas,
        topic_partitions=t.partitions,
        topic_replication_factor=t.replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_compression_type="lz4",
        # State changelog records go out in batches of up to this many bytes (one future
        # per batch, not per key: streams.runtime.state_store).
        producer_max_batch_size=256 * 1024,
        broker_commit_interval=1.0,
        # A killed worker leaves the group only when its session times out; until then
        # its partitions wait. 10 s keeps failover short (heartbeats run in Faust's
        # consumer thread, so a busy event loop does not miss them).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_every=a.batch_max_events * 4,
        stream_buffer_maxsize=max(4096, a.batch_max_events * 2),
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind=w.web_host,
        web_host=w.web_host,
        web_port=w.web_port,
        # Faust's /table/{name}/{key}/ would serve the state table to anyone, past the API
        # token; the usage API is the only way in. (/router stays: it names owners only.)
        web_tables_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        GlobalTable=CustomersTable,
    )
    events_topic = app.topic(t.events, partitions=t.partitions, **RAW)
    outputs = _Outputs(
        summaries=app.topic(t.summaries, partitions=t.partitions, **RAW),
        alerts=app.topic(t.alerts, partitions=t.partitions, **RAW),
        dlq=app.topic(t.events_dlq, partitions=t.partitions, **RAW),
    )
    rocks = {
        "driver": "rocksdict",
        "write_buffer_size": w.rocksdb_write_buffer_mb * 1024 * 1024,
        "block_cache_size": w.rocksdb_block_cache_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
    }
    state = app.Table(STATE_TABLE, partitions=t.partitions, options=rocks,
                      help="All aggregation state; one changelog keeps its write order.",
                      **TABLE_RAW)
    customers = app.GlobalTable(
        "customers",
        partitions=t.partitions,
        changelog_topic=app.topic(t.customers, partitions=t.partitions, compacting=True, **RAW),
        options={"driver": "rocksdict", "write_buffer_size": 4 * 1024 * 1024,
                 "block_cache_size": 8 * 1024 * 1024},
        help="customer -> customer record v1 (Stripe id, plan, thresholds, budget)",
        **TABLE_RAW,
    )
    store = StateStore(state, producer=lambda: _aiokafka_producer(app))
    _guard_commits(app, store)
    reader = BrokerReader(t.events, connection_options(settings.kafka), source_record_from_kafka)
    processor = BatchProcessor(
        core=Aggregator(core_config(settings)),
        store=store,
        customers=customers,
        topics=outputs,
        events_topic_name=t.events,
        highwater=lambda tp: app.consumer.highwater(tp),
        gap_fetch=reader.fetch,
        # Faust's private gap tracking: without it its commit stops at the first offset
        # it skipped (it never acks what it did not deliver).
        mark_done=lambda tp, first, last: _faust_consumer(app)._add_gap(tp, first, last),
    )

    @app.agent(events_topic, name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(a.batch_max_events, within=a.batch_max_ms / 1000):
            await _complete(processor.process(batch))

    tick_every_s = max(0.2, a.idle_close_after_s / 4)

    @app.timer(tick_every_s)  # type: ignore[untyped-decorator]
    async def tick_idle_partitions() -> None:
        await _tick(app, events_topic, processor, settings)

    @app.timer(SAMPLE_EVERY_S)  # type: ignore[untyped-decorator]
    async def sample_state_size() -> None:
        from streams import metrics

        size = await asyncio.to_thread(directory_size_bytes, w.state_dir)
        metrics.ROCKSDB_SIZE.set(size)

    return Components(app, state, customers, events_topic, processor, settings, reader)


# Exit status of a worker that stopped in the middle of a batch (EX_SOFTWARE).
EXIT_BATCH_INTERRUPTED = 70
# How long a shutdown waits for the batch in progress.
FINISH_ON_STOP_S = 30.0


async def _complete(batch: Coroutine[Any, Any, None]) -> None:
    """Run one batch to its end, or end the process; Faust acks the batch afterwards.

    A shutdown (the agent cancelled while the batch waits for Kafka) first lets the batch
    finish, for up to FINISH_ON_STOP_S, so that what Faust acks and commits is done.
    """
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(task), FINISH_ON_STOP_S)
        except BaseException:
            _stop_before_ack()
        raise
    except BaseException:
        _stop_before_ack()


def _stop_before_ack() -> None:
    """End the process now: a batch that did not complete must never be acknowledged.

    Faust acks a batch's events when the agent moves on, even when the batch raised or was
    cancelled (a shutdown while it waited for Kafka), and then commits their offsets: the
    events would be skipped for good although their state was never written. Exiting here
    leaves the offsets where they are and no clean-shutdown marker, so the next start
    restores the state from the changelog and processes the batch again (its outputs
    carry the same ids). Exit status 70.
    """
    log.critical("a batch did not complete; stopping the worker without acknowledging it",
                 exc_info=True)
    logging.shutdown()
    os._exit(EXIT_BATCH_INTERRUPTED)


def _faust_consumer(app: faust.App) -> Any:
    consumer: Any = app.consumer
    return consumer


def _aiokafka_producer(app: faust.App) -> Any:
    """The aiokafka producer under Faust's: the one its commit flushes."""
    producer: Any = app.producer
    return producer._ensure_producer()


def _guard_commits(app: faust.App, store: StateStore) -> None:
    """Make Faust's pre-commit flush fail when a state changelog batch failed.

    Faust commits offsets right after ``app.producer.flush()``; a flush does not raise for
    a batch that failed. Raising here stops the commit, and the worker, before an offset
    is committed past state that never reached the changelog.
    """
    producer = app.producer
    flush = producer.flush

    async def flush_then_check() -> None:
        await flush()
        store.check()

    producer.flush = flush_then_check  # type: ignore[method-assign]


async def _tick(app: faust.App, events_topic: Any, processor: BatchProcessor,
                settings: Settings) -> None:
    """Write a tick record into each idle partition this worker owns.

    The tick goes through the log rather than straight into the core, so closing a window
    on an idle partition happens at one fixed offset and a replay closes it identically.
    """
    from streams import metrics

    bound_s = settings.aggregator.idle_close_after_s
    now = time.time()
    try:
        assigned = app.consumer.assignment()
    except Exception:  # the consumer is not started yet, or is rebalancing
        return
    for tp in assigned:
        if tp.topic != events_topic.get_topic_name():
            continue
        last = processor.last_record_wall.setdefault(tp.partition, now)
        idle = now - last >= bound_s
        # Idle and quiet partitions still tick now and then, so that expiry runs.
        needed = processor.busy.get(tp.partition, True) or now - last >= 60 * bound_s
        if idle and needed:
            processor.last_record_wall[tp.partition] = now
            await events_topic.send(
                key=None, value=b"", partition=tp.partition,
                headers=[(TICK_HEADER, str(int(now * 1000)).encode())],
            )
            metrics.TICKS.inc()
