"""Prometheus instruments of the aggregator (the sink has its own in streams.sink.metrics).

Names follow Prometheus conventions: a unit suffix, ``_total`` on counters. No label
carries a customer id, so cardinality stays bounded by partitions, reasons and meters.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ALERTS",
    "BATCH_DURATION",
    "BATCH_EVENTS",
    "CAUGHT_UP",
    "CONSUMER_LAG",
    "DLQ",
    "EVENTS",
    "EVENT_TIME_LAG",
    "FENCED",
    "GAP_RECORDS",
    "OPEN_WINDOWS",
    "OWNED_PARTITIONS",
    "RESTORED_RECORDS",
    "ROCKSDB_MEMORY",
    "ROCKSDB_SIZE",
    "STATE_WRITES",
    "SUMMARIES",
    "TICKS",
    "TXN_RESETS",
    "WATERMARK",
    "caught_up",
]

EVENTS = Counter(
    "meterstream_events_total",
    "Usage events by outcome (accepted, late, duplicate, replayed, invalid).",
    ["outcome", "reason"],
)
DLQ = Counter(
    "meterstream_dlq_messages_total",
    "Messages written to a dead-letter topic.",
    ["topic", "reason"],
)
SUMMARIES = Counter(
    "meterstream_summaries_total", "Meter summaries emitted, final or correction.", ["kind"]
)
ALERTS = Counter("meterstream_alerts_total", "Threshold alerts emitted.", ["threshold_kind"])
TICKS = Counter("meterstream_ticks_total", "Tick records written to idle partitions.")
STATE_WRITES = Counter(
    "meterstream_state_writes_total", "State writes (each is one changelog message)."
)
OWNED_PARTITIONS = Gauge(
    "meterstream_owned_partitions", "Partitions of the events topic this worker owns."
)
RESTORED_RECORDS = Counter(
    "meterstream_restored_records_total",
    "Changelog records applied to local state while restoring, per partition.",
    ["partition"],
)
FENCED = Counter(
    "meterstream_partitions_fenced_total",
    "Batches abandoned because a newer owner fenced this worker's producer.",
    ["partition"],
)
TXN_RESETS = Counter(
    "meterstream_transaction_resets_total",
    "Batches that failed for another reason: the partition's producer was restarted and "
    "the batch read again from the committed position.",
    ["partition"],
)
EVENT_TIME_LAG = Gauge(
    "meterstream_event_time_lag_seconds",
    "Wall clock minus the newest event time seen, per partition.",
    ["partition"],
)
WATERMARK = Gauge(
    "meterstream_watermark_timestamp_seconds", "Watermark per partition (epoch s).", ["partition"]
)
OPEN_WINDOWS = Gauge(
    "meterstream_open_window_starts", "Window starts with open windows, per partition.",
    ["partition"],
)
CONSUMER_LAG = Gauge(
    "meterstream_consumer_lag_messages",
    "High watermark minus the next offset to process, per partition.",
    ["partition"],
)
CAUGHT_UP = Gauge(
    "meterstream_caught_up",
    "1 when the worker owns partitions and every one's consumer lag (as in "
    "meterstream_consumer_lag_messages) is within WORKER__CAUGHT_UP_MAX_LAG, else 0.",
)


def caught_up(lag_by_partition: Mapping[int, int | None], max_lag_messages: int) -> bool:
    """The "caught up" signal for operators: True when every owned partition's lag is
    known and at most ``max_lag_messages``. A worker that owns no partition, or one whose
    lag is not known yet (None: before its first fetch), is not caught up."""
    if not lag_by_partition:
        return False
    return all(lag is not None and lag <= max_lag_messages
               for lag in lag_by_partition.values())


GAP_RECORDS = Counter(
    "meterstream_consumer_gap_records_total",
    "Source records the consumer skipped over and the worker read back from the broker.",
    ["partition"],
)
ROCKSDB_SIZE = Gauge(
    "meterstream_rocksdb_size_bytes",
    "Bytes on disk under this worker's state directory (RocksDB stores), sampled every 15 s.",
)
ROCKSDB_MEMORY = Gauge(
    "meterstream_rocksdb_memory_bytes",
    "RocksDB memory, sampled every 15 s. budget: WORKER__ROCKSDB_MEMORY_MB; cache: what "
    "the shared block cache holds, the memtables charged to it included; memtables: the "
    "memtables alone; table_readers: SST readers' own memory, outside the budget.",
    ["kind"],
)
BATCH_DURATION = Histogram(
    "meterstream_batch_duration_seconds",
    "Time to aggregate one batch and commit it (Kafka transaction, then RocksDB).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_EVENTS = Histogram(
    "meterstream_batch_events",
    "Records per batch taken from the stream.",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
