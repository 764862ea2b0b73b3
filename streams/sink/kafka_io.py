"""The sink's Kafka plumbing: starting clients while Kafka may be away, reading a topic to
its end, the DLQ writer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.config import KafkaSettings
from streams.kafka.client import connection_options
from streams.kafka.compat import BrokerNotReady, partitions_of, started_with_brokers
from streams.kafka.dead_letter import dead_letter, kafka_source
from streams.util.backoff import Backoff

__all__ = [
    "DeadLetterWriter",
    "Source",
    "partitions_of",
    "read_to_end",
    "start_when_reachable",
]

log = logging.getLogger(__name__)

# Log every this many failed attempts at WARNING (the first one too), the others at DEBUG.
_WARN_EVERY = 10
# How long a broker that accepts connections may fail a client's bootstrap before the
# sink takes it for a refusal (start_when_reachable).
REFUSED_GRACE_S = 15.0


async def start_when_reachable(client: Any, what: str, servers: str,
                               backoff: Backoff | None = None,
                               refused_grace_s: float = REFUSED_GRACE_S) -> None:
    """Start ``client`` (an AIOKafkaConsumer or AIOKafkaProducer) once Kafka answers and
    names a broker (:func:`streams.kafka.compat.started_with_brokers`: a broker that is
    starting answers with none, and aiokafka would never ask again).

    A broker that is down while the sink starts (a restart of both, a supervisor bringing
    the sink back during a broker outage) is waited for, as the worker waits for it,
    instead of ending the process. aiokafka reports a refused login (wrong SASL password)
    and a bad TLS setup as the same "unable to bootstrap" as a broker that is down, so
    the broker is told apart by a plain TCP connect to ``servers``: if one accepts, Kafka
    is there and refused us, and the error propagates, after ``refused_grace_s``. (A
    broker that is starting or stopping also accepts connections and closes them: the
    chaos suite saw one. The grace lets it finish; a wrong password still stops the sink,
    that much later.)
    """
    backoff = backoff or Backoff(base_s=0.5, cap_s=10.0)
    start = started_with_brokers(client)
    attempt = 0
    refused_since: float | None = None
    while True:
        try:
            await start()
        except KafkaConnectionError as exc:
            delay = backoff.delay_s(attempt)
            if not isinstance(exc, BrokerNotReady) and await _accepts_tcp(servers):
                now = time.monotonic()
                refused_since = now if refused_since is None else refused_since
                if now - refused_since >= refused_grace_s:
                    raise
                log.warning("%s: kafka accepts connections but the client could not "
                            "bootstrap (%s); trying again for up to %.0f s (a broker "
                            "starting or stopping), then giving up", what, exc,
                            refused_grace_s - (now - refused_since))
            else:
                refused_since = None
                level = logging.WARNING if attempt % _WARN_EVERY == 0 else logging.DEBUG
                log.log(level, "%s: kafka unreachable (%s), attempt %d; retrying in %.1f s",
                        what, exc, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        if attempt:
            log.info("%s: kafka reachable after %d failed attempt(s)", what, attempt)
        return


async def _accepts_tcp(servers: str, timeout_s: float = 3.0) -> bool:
    """True if any ``host:port`` of ``servers`` accepts a TCP connection."""
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout_s)
        except (OSError, ValueError, TimeoutError):
            continue
        writer.close()
        return True
    return False


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int
    key: str | None


class DeadLetterWriter:
    """Writes envelopes to the summaries DLQ; :meth:`write` returns once Kafka acked."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            **connection_options(kafka),
            client_id=f"{kafka.client_id}-sink-dlq",
            acks="all",
            enable_idempotence=True,
        )
        self._servers = kafka.bootstrap_servers

    async def start(self) -> None:
        """Start once Kafka answers (:func:`start_when_reachable`)."""
        await start_when_reachable(self._producer, "summaries DLQ producer", self._servers)

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, source: Source, original: bytes, reason: str, detail: str) -> None:
        value = dead_letter("sink", reason, detail, kafka_source(
            source.topic, source.partition, source.offset, source.key), original)
        headers = [("reason", reason.encode()), ("source", source.topic.encode())]
        key = source.key.encode() if source.key is not None else None
        await self._producer.send_and_wait(self.topic, value, key=key, headers=headers)




async def read_to_end(
    kafka: KafkaSettings, topic: str, *, client_id: str
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` from the beginning to the end offsets taken at
    start; a fresh group-less consumer, so nothing is committed anywhere."""
    consumer = AIOKafkaConsumer(
        **connection_options(kafka),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        for tp in remaining:
            await consumer.position(tp)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            for tp in list(remaining):
                # Transaction markers have offsets but no record: compare positions.
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
