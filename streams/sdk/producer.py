"""The producer SDK for compute workers: :class:`UsageProducer` (asyncio) and
:class:`UsageReporter` (a blocking facade for threaded code).

Usage::

    async with UsageProducer.from_settings(load_settings(), spool_dir="/var/spool/ms") as p:
        event_id = await p.report("c-1", "cpu_seconds", Decimal("12.5"))

Every event is validated against usage event v1 before it leaves the process (a float
value, a naive datetime or any contract violation raises :class:`EventValidationError`),
gets a UUIDv7 id unless one is given, and is keyed by its customer. With ``pack=True``
the events of one customer are sent as one JSON array record (up to ``pack_max_events``
events or ``pack_max_ms`` milliseconds).

The hot path never awaits a send: events are appended straight into one aiokafka
``BatchBuilder`` per partition (the partition is aiokafka's murmur2 partitioner of the
key, cached per customer); full or lingering batches are shipped by a background task
with ``send_batch`` (idempotent producer, ``acks=all``). ``report`` only waits when more
than ``max_pending_batches`` batches are unacknowledged (backpressure).

Delivery guarantee
------------------
Each event reported is, unless the spool's disk fails (:class:`ProducerError`), either
acknowledged by Kafka or written to the durable local spool (:mod:`streams.sdk.spool`), and
spooled events are replayed in order once Kafka answers again. Concretely:

* The spool takes over when the producer cannot start, when shipping or delivering a
  batch fails, or when a batch stays unacknowledged for ``unreachable_after_s``. At that
  moment the records already handed to Kafka are copied to a *rescue* segment, then the
  records not yet shipped, then every later event: the spool keeps the order in which
  events were reported. Events reported while the spool holds anything go to the spool.
* Replay waits until the batches that were in flight are settled; those Kafka
  acknowledged after all are skipped (so a plain broker outage delivers every event
  exactly once), the others are replayed.
* Replay advances a durable cursor only past acknowledged records, so a crash during
  replay resends at most the acknowledged-but-uncommitted tail of one chunk. Kafka may
  therefore hold an event twice after a crash or a lost acknowledgement; the event id,
  stable across retries, is the dedup key downstream (the aggregator dedups on
  (customer, id)). Nothing is dropped; duplicates are possible, at-least-once.
* ``flush()`` returns when every event reported before it is acknowledged by Kafka or
  fsynced in the spool. ``close()`` flushes, waits up to ``close_timeout_s`` for Kafka,
  and leaves whatever is not acknowledged in the spool for the next producer to replay.
* Events still in memory (unshipped batches, or not yet fsynced with the ``interval``
  policy) are lost if the machine crashes; a process crash loses only unshipped ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from aiokafka import AIOKafkaProducer

from streams.config import KafkaSettings, Settings
from streams.errors import ProducerError
from streams.kafka.client import (
    client_options,
    default_compression,
    key_partition,
)
from streams.sdk.delivery import Batch, Delivery
from streams.sdk.encode import EventValue, Prepared, Timestamp, encode_event
from streams.sdk.spool import FsyncPolicy, Spool
from streams.sdk.uuid7 import uuid7_str

if TYPE_CHECKING:
    from streams.sdk.reporter import UsageReporter

__all__ = ["UsageProducer", "UsageReporter", "default_compression", "uuid7_str"]

log = logging.getLogger(__name__)

_YIELD_EVERY = 256  # report() calls between two yields to the event loop

Compression = Literal["zstd", "lz4", "gzip", "none", "auto"]


@dataclass(slots=True, eq=False)
class _Pack:
    key: bytes
    parts: list[bytes] = field(default_factory=list)  # the events' JSON
    size: int = 1  # the bytes of the record "[e1,e2,...]" less its "]"


class UsageProducer:
    """Validates, packs, batches and sends usage events; spools them while Kafka is away.

    Not thread-safe: use it from one event loop (threaded code: :class:`UsageReporter`).
    Sizes are in bytes, durations carry their unit in the name.

    This class is the batching half (validation, packs, one open batch per partition,
    linger); the delivery half (the client, shipping, the spool switch, replay) is its
    :class:`streams.sdk.delivery.Delivery`.
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        topic: str = "usage.events",
        *,
        bootstrap_servers: str | None = None,
        spool_dir: Path | str | None = None,
        pack: bool = False,
        pack_max_events: int = 1000,
        pack_max_bytes: int = 256 * 1024,
        pack_max_ms: int = 50,
        pack_buffer_max_bytes: int = 8 * 1024 * 1024,
        linger_ms: int = 5,
        max_batch_size: int = 512 * 1024,
        max_pending_batches: int = 64,
        compression: Compression = "auto",
        fsync: FsyncPolicy = "interval",
        fsync_interval_ms: int = 100,
        unreachable_after_s: float = 5.0,
        request_timeout_ms: int = 30_000,
        close_timeout_s: float = 10.0,
        replay_chunk_records: int = 20_000,
        retry_backoff_max_s: float = 5.0,
        client_factory: Callable[..., Any] = AIOKafkaProducer,
    ) -> None:
        if not 1 <= pack_max_events <= 10_000:
            raise ValueError("pack_max_events must be within 1..10000 (the contract's limit)")
        if not 1024 <= pack_max_bytes <= 1_000_000:
            raise ValueError("pack_max_bytes must be within 1024..1000000 (records <= 1 MiB)")
        self.settings = kafka or KafkaSettings()
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers or self.settings.bootstrap_servers
        self.pack = pack
        self.pack_max_events = pack_max_events
        self.pack_max_bytes = pack_max_bytes
        self.pack_buffer_max_bytes = pack_buffer_max_bytes
        self._packed_bytes = 0
        self._pack_max_s = pack_max_ms / 1000
        self._linger_s = linger_ms / 1000
        self.max_batch_size = max_batch_size
        self.max_pending_batches = max_pending_batches
        self.compression = default_compression() if compression == "auto" else compression
        self.request_timeout_ms = request_timeout_ms
        self.close_timeout_s = close_timeout_s
        self.spool = Spool(spool_dir or _default_spool_dir(self.settings.client_id, topic),
                           fsync=fsync)
        self._fsync_always = fsync == "always"
        # The seam to Kafka: client_factory is called with AIOKafkaProducer's keyword
        # arguments; tests pass a small fake with start/stop/partitions_for/create_batch/
        # send_batch.
        self._delivery = Delivery(
            topic, self.spool,
            make_client=lambda: client_factory(**client_options(
                self.settings, self.bootstrap_servers, compression=self.compression,
                max_batch_size=max_batch_size, request_timeout_ms=request_timeout_ms)),
            bootstrap_servers=self.bootstrap_servers,
            request_timeout_s=request_timeout_ms / 1000,
            max_batch_size=max_batch_size,
            max_pending_batches=max_pending_batches,
            fsync_interval_s=fsync_interval_ms / 1000,
            unreachable_after_s=unreachable_after_s,
            replay_chunk_records=replay_chunk_records,
            retry_backoff_max_s=retry_backoff_max_s,
            take_open=self._take_open,
            on_idle=self._on_partition_idle,
            on_connected=self._forget_partitions,
        )

        self._partition_of: dict[bytes, int] = {}
        self._started = False
        self._accepting = False  # started and not closed: report() takes events
        self._closing = False
        self._closed = False
        self._open: dict[int, Batch] = {}
        # The open batch of a record key: _emit's shortcut past partition and _open; emptied
        # whenever a batch is shipped or the spool takes over (so empty while spooling).
        self._batch_of: dict[bytes, Batch] = {}
        self._packs: dict[str, _Pack] = {}
        self._linger_handle: asyncio.TimerHandle | None = None
        self._pack_handle: asyncio.TimerHandle | None = None
        self.events_reported = 0

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> UsageProducer:
        """A producer for ``settings.kafka`` and the events topic of ``settings.topics``."""
        return cls(settings.kafka, settings.topics.events, **options)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool and connect; if Kafka is unreachable, start in spool mode."""
        if self._started:
            return
        self._started = True
        self._accepting = True
        self.spool.open()
        await self._delivery.start()
        log.info(
            "usage producer started: topic=%s servers=%s compression=%s pack=%s spooling=%s",
            self.topic, self.bootstrap_servers, self.compression, self.pack,
            self._delivery.spooling,
        )

    async def flush(self) -> None:
        """Return when every event reported so far is acknowledged by Kafka or fsynced in
        the spool."""
        self._close_packs()
        self._ship_open()
        await self._delivery.wait_settled()
        await self.spool.sync()

    async def close(self) -> None:
        """Flush, wait up to ``close_timeout_s`` for Kafka, keep the rest in the spool."""
        if self._closed or not self._started:
            self._closed = True
            self._accepting = False
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._drain(), self.close_timeout_s)
        except TimeoutError:
            log.warning("kafka did not acknowledge everything within %.1f s; the rest stays "
                        "in the spool %s", self.close_timeout_s, self.spool.directory)
        await self._delivery.stop()
        self._closed = True
        self._accepting = False
        await self.spool.sync()
        self.spool.close()
        log.info("usage producer closed: %d events reported, %d spool bytes pending",
                 self.events_reported, self.spool.pending_bytes)

    async def _drain(self) -> None:
        await self.flush()
        await self._delivery.drain()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def spooling(self) -> bool:
        """Whether events currently go to the spool (Kafka unreachable or spool draining)."""
        return self._delivery.spooling

    # -- the hot path ----------------------------------------------------------------

    async def report(
        self,
        customer: str,
        meter: str,
        value: EventValue,
        *,
        timestamp: Timestamp = None,
        id: str | None = None,  # the contract's field name
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Validate and queue one event; return its id.

        ``value``: Decimal, int or decimal string (a float raises EventValidationError).
        ``timestamp``: timezone-aware datetime, epoch milliseconds, or None for now.
        ``id``: defaults to a new UUIDv7. Returns once the event is buffered (or spooled
        with the ``always`` fsync policy: fsynced); :meth:`flush` waits for Kafka.
        """
        event_id, payload = encode_event(customer, meter, value, timestamp, id, attributes)
        if not self._accepting:
            raise ProducerError("the producer is not started (use start() or 'async with')")
        if self.pack:
            self._add_to_pack(customer, payload)
        else:
            # _emit's common case inlined: the key's open batch takes the record.
            key = customer.encode()
            batch = self._batch_of.get(key)
            if batch is not None and batch.builder.append(
                timestamp=None, key=key, value=payload) is not None:
                batch.data += key
                batch.data += payload
                batch.lengths.append(len(key))
                batch.lengths.append(len(payload))
            else:
                self._emit(key, payload)  # (a full builder refuses the record again)
        delivery = self._delivery
        if delivery.pending() >= self.max_pending_batches or (
            delivery.spooling and self._fsync_always
        ):
            await self.wait_accepted()
        reported = self.events_reported = self.events_reported + 1
        if not reported % _YIELD_EVERY:
            # A caller reporting in a tight loop never suspends otherwise: let the
            # shipper, the linger and pack timers and the network run.
            await asyncio.sleep(0)
        return event_id

    async def wait_accepted(self) -> None:
        """Apply backpressure (too many unacknowledged batches) and, while spooling with
        the ``always`` policy, wait for the fsync of the events accepted so far."""
        delivery = self._delivery
        if delivery.pending() >= self.max_pending_batches:
            await delivery.wait_room()
        if delivery.spooling and self.spool.fsync_policy == "always":
            await self.spool.sync()

    def accept(self, prepared: Prepared) -> None:
        """Take a validated event (see :func:`streams.sdk.encode.prepare_event`); no waiting.

        Follow with :meth:`wait_accepted` to apply backpressure and the fsync policy.
        """
        if not self._accepting:
            raise ProducerError("the producer is not started (use start() or 'async with')")
        self.events_reported += 1
        if self.pack:
            self._add_to_pack(prepared.customer, prepared.payload)
        else:
            self._emit(prepared.key, prepared.payload)

    def _add_to_pack(self, customer: str, payload: bytes) -> None:
        pk = self._packs.get(customer)
        if pk is None:
            pk = self._packs[customer] = _Pack(customer.encode())
            if self._pack_handle is None:
                self._pack_handle = asyncio.get_running_loop().call_later(
                    self._pack_max_s, self._on_pack_timer)
        parts = pk.parts
        parts.append(payload)
        size = len(payload) + 1  # and a "," or the "]"
        pk.size += size
        self._packed_bytes += size
        if len(parts) >= self.pack_max_events or pk.size >= self.pack_max_bytes:
            del self._packs[customer]
            self._emit_pack(pk)
        elif self._packed_bytes >= self.pack_buffer_max_bytes:
            self._close_packs()

    def _emit_pack(self, pk: _Pack) -> None:
        self._packed_bytes -= pk.size - 1
        self._emit(pk.key, b"".join((b"[", b",".join(pk.parts), b"]")))

    def _emit(self, key: bytes, value: bytes) -> None:
        batch = self._batch_of.get(key)
        if batch is None:
            if self._delivery.spooling:
                self.spool.append(((key, value),))
                return
            partition = self._partition_of.get(key)
            if partition is None:
                partition = key_partition(key, self._delivery.partitions)
                self._partition_of[key] = partition
            batch = self._open.get(partition)
            if batch is None:
                batch = self._new_batch(partition)
            self._batch_of[key] = batch
        if batch.builder.append(timestamp=None, key=key, value=value) is None:
            partition = batch.partition
            self._ship(batch)
            batch = self._batch_of[key] = self._new_batch(partition)
            if batch.builder.append(timestamp=None, key=key, value=value) is None:
                raise ProducerError(f"record of {len(value)} bytes exceeds max_batch_size")
        batch.data += key
        batch.data += value
        batch.lengths.append(len(key))
        batch.lengths.append(len(value))

    def _new_batch(self, partition: int) -> Batch:
        kafka = self._delivery.kafka
        assert kafka is not None
        batch = Batch(partition, kafka.create_batch())
        self._open[partition] = batch
        if self._linger_handle is None:
            self._linger_handle = asyncio.get_running_loop().call_later(
                self._linger_s, self._on_linger)
        return batch

    def _ship(self, batch: Batch) -> None:
        del self._open[batch.partition]
        self._batch_of.clear()
        batch.builder.close()
        self._delivery.submit(batch)

    def _ship_open(self) -> None:
        for batch in list(self._open.values()):
            self._ship(batch)

    def _on_linger(self) -> None:
        # A lingering batch whose partition still has a batch on the way keeps filling
        # until that one settles (_settle ships it then): under load batches fill up
        # instead of leaving every linger_ms as a trickle, idle latency stays linger_ms.
        self._linger_handle = None
        delivery = self._delivery
        for batch in list(self._open.values()):
            if not delivery.busy(batch.partition):
                self._ship(batch)

    # -- what the delivery calls -----------------------------------------------------

    def _take_open(self) -> list[Batch]:
        """The spool takes the open batches over: hand them out, forget them."""
        batches = list(self._open.values())
        self._open.clear()
        self._batch_of.clear()
        return batches

    def _on_partition_idle(self, partition: int) -> None:
        lingering = self._open.get(partition)
        if lingering is not None and self._linger_handle is None:
            self._ship(lingering)  # its linger expired while the partition was busy

    def _forget_partitions(self) -> None:
        self._partition_of.clear()  # a new client: the topic's partitions may have changed

    def _on_pack_timer(self) -> None:
        self._pack_handle = None
        self._close_packs()

    def _close_packs(self) -> None:
        packs, self._packs = self._packs, {}
        for pk in packs.values():
            self._emit_pack(pk)
        self._packed_bytes = 0


def _default_spool_dir(client_id: str, topic: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "meterstream" / "spool" / f"{client_id}-{topic}"


def __getattr__(name: str) -> type[UsageReporter]:
    # UsageReporter lives in streams.sdk.reporter (which imports this module); re-exported here.
    if name == "UsageReporter":
        from streams.sdk.reporter import UsageReporter

        return UsageReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
