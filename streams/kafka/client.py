"""meterstream's use of aiokafka: connection options from settings (for every client:
producers, consumers, the admin client), the producer's options, a forced stop, and
sending a chunk of spooled records with per-record acknowledgement.

The only other modules that touch aiokafka's producer API are the SDK's: streams.sdk.producer
(its hot path appends into aiokafka ``BatchBuilder`` objects directly) and
streams.sdk.delivery (``send_batch``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.codec import has_lz4, has_zstd
from aiokafka.errors import ProducerClosed
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from streams.config import KafkaSettings
from streams.errors import ProducerError
from streams.kafka.compat import fail_pending_batches

__all__ = [
    "client_options",
    "connection_options",
    "default_compression",
    "force_stop",
    "key_partition",
    "read_to_end",
    "send_records",
    "ssl_context",
]

log = logging.getLogger(__name__)


def default_compression() -> str:
    """zstd, else lz4 (both need cramjam, aiokafka's ``lz4``/``zstd`` extra), else gzip."""
    if has_zstd():
        return "zstd"
    if has_lz4():
        return "lz4"
    return "gzip"


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (CA, client certificate), else None."""
    s = settings
    if s.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(s.ssl_cafile) if s.ssl_cafile else None,
        certfile=str(s.ssl_certfile) if s.ssl_certfile else None,
        keyfile=str(s.ssl_keyfile) if s.ssl_keyfile else None,
        password=s.ssl_password.get_secret_value() if s.ssl_password else None,
    )
    return context


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client needs: bootstrap servers, security protocol,
    TLS context and SASL credentials (secrets are unwrapped here and nowhere logged)."""
    s = settings
    options: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers,
        "security_protocol": s.security_protocol,
    }
    context = ssl_context(s)
    if context is not None:
        options["ssl_context"] = context
    if s.sasl_mechanism is not None:
        options["sasl_mechanism"] = s.sasl_mechanism
        options["sasl_plain_username"] = s.sasl_username
        if s.sasl_password is not None:
            options["sasl_plain_password"] = s.sasl_password.get_secret_value()
    return options


def client_options(
    settings: KafkaSettings,
    bootstrap_servers: str,
    *,
    compression: str,
    max_batch_size: int,
    request_timeout_ms: int,
) -> dict[str, Any]:
    """Keyword arguments of AIOKafkaProducer: idempotent, acks=all, plus the connection
    options of the settings (with ``bootstrap_servers`` as given)."""
    return {
        **connection_options(settings),
        "bootstrap_servers": bootstrap_servers,
        "client_id": settings.client_id,
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": None if compression == "none" else compression,
        "linger_ms": 0,  # the producer lingers itself before send_batch
        "max_batch_size": max_batch_size,
        "max_request_size": max(1_048_576, max_batch_size + 65_536),
        "request_timeout_ms": request_timeout_ms,
    }


# aiokafka's murmur2 is pure Python (microseconds a key), and the keys are customer ids,
# which repeat: a summary, an alert or an event of a customer seen lately reuses its hash.
_murmur2: Callable[[bytes], int] = functools.lru_cache(maxsize=4096)(murmur2)


def key_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of ``key`` among ``partitions`` (sorted): Kafka's default partitioner
    (murmur2, as the Java client and aiokafka use), so every writer of a customer's records
    and every reader looking for them agree."""
    hashed = _murmur2(key)
    return partitions[(hashed & 0x7FFFFFFF) % len(partitions)]


async def read_to_end(
    consumer: Any, ends: Mapping[TopicPartition, int],
    handle: Callable[[TopicPartition, list[Any]], None], *, max_records: int,
) -> None:
    """Fetch the assigned partitions of ``ends`` until each one's position reaches its end
    offset, handing every non-empty fetch of a partition to ``handle``, in order. The
    position, not the last record, decides: offsets past the last record may hold only
    transaction markers."""
    pending = {tp for tp, end in ends.items() if end > await consumer.position(tp)}
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=max_records)
        for tp, msgs in fetched.items():
            if msgs:
                handle(tp, msgs)
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)


async def force_stop(kafka: Any) -> None:
    """Stop an aiokafka producer without waiting for a broker that may be gone: pending
    batches fail with ProducerClosed (their records are in the spool already)."""
    fail_pending_batches(kafka)
    await kafka.stop()


async def send_records(
    kafka: Any,
    topic: str,
    partitions: list[int],
    records: list[tuple[bytes, bytes]],
    acked: list[bool],
) -> bool:
    """Send the records not yet ``acked`` (in order within each partition), wait for every
    acknowledgement and mark ``acked`` as they come. False if any batch failed."""
    batches: dict[int, tuple[Any, list[int]]] = {}
    sends: list[tuple[Any, int, list[int]]] = []
    for i, (key, value) in enumerate(records):
        if acked[i]:
            continue
        partition = key_partition(key, partitions)
        entry = batches.get(partition)
        if entry is None or entry[0].append(timestamp=None, key=key, value=value) is None:
            if entry is not None:
                sends.append((entry[0], partition, entry[1]))
            entry = batches[partition] = (kafka.create_batch(), [])
            if entry[0].append(timestamp=None, key=key, value=value) is None:
                raise ProducerError(f"spooled record of {len(value)} bytes is too large")
        entry[1].append(i)
    sends.extend((b, p, idx) for p, (b, idx) in batches.items())
    ok = True

    def mark(indices: list[int], future: asyncio.Future[Any]) -> None:
        nonlocal ok
        exc = ProducerClosed() if future.cancelled() else future.exception()
        if exc is None:
            for i in indices:
                acked[i] = True
        else:
            ok = False
            log.debug("replay batch of %d record(s) failed: %r", len(indices), exc)

    futures: list[asyncio.Future[Any]] = []
    failed: set[int] = set()
    for builder, partition, indices in sends:
        if partition in failed:
            continue  # keep the order within a partition
        try:
            future = await kafka.send_batch(builder, topic, partition=partition)
        except Exception as exc:
            log.warning("replay send to partition %d failed (%s)", partition,
                        type(exc).__name__)
            ok = False
            failed.add(partition)
            continue
        future.add_done_callback(functools.partial(mark, indices))
        futures.append(future)
    if futures:
        await asyncio.wait(futures)
    return ok and not failed
