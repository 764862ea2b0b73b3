"""The whole pipeline under faults, for tests/chaos: workload, sink processes, the ledger.

A :class:`ChaosRun` adds to a :class:`~streams.testing.pipeline.PipelineEnv` (topics and
``meterstream worker`` subprocesses) what a scenario needs around it:

- an in-process :class:`~streams.fakes.stripe.FakeStripe` that accepts only ``stripe_key``
  (so the key is really used, and a secrets scan of the logs means something), or, with
  ``engine="metronome"``, a :class:`~streams.fakes.metronome.FakeMetronome`
  that accepts only that bearer token (the env's worker must then carry
  ``METERSTREAM_SINK__ENGINE=metronome`` too);
- ``meterstream sink`` subprocesses (so they can be SIGKILLed), configured for the fake;
- the customers topic filled with a Stripe id (``cus_<customer>``) per customer, and a
  Metronome ingest alias (``acct_<customer>``);
- a paced feed of a generated workload (:class:`Workload`: duplicates, late and invalid
  records, and the ground truth they imply);
- :meth:`ChaosRun.settle`: wait until the fake's ledger equals the ground truth *and* the
  worker and the sink have committed everything, then return the :class:`LedgerDiff`.

The pass mark of every scenario is the ledger: per (customer, meter), what the fake
Stripe accepted equals the sum of distinct valid events. :class:`LedgerDiff` reports the
shortfall (usage lost) and the excess (usage billed twice) separately, priced in the
currency's minor units with the meters' rate card, exactly (Decimal).

Blocking calls (process waits, broker start and stop) belong in ``asyncio.to_thread``:
the fake Stripe runs on the caller's event loop and must keep answering.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.config import Settings
from streams.fakes.metronome import FakeMetronome
from streams.fakes.stripe import FakeStripe
from streams.kafka.local.process import ChildProcess, free_ports, spawn, wait_until_async
from streams.loadgen.generate import GroundTruth, totals_from_summaries
from streams.sink.engines import sink_group_id
from streams.testing.pipeline import PipelineEnv, WorkerProcess
from streams.testing.readback import read_topic
from streams.testing.verdict import (
    ChaosReport,
    LedgerDiff,
    Workload,
    assert_exact,
    ledger_diff,
    metronome_alias,
    stripe_id,
)

__all__ = [
    "ChaosReport",
    "ChaosRun",
    "LedgerDiff",
    "SinkProcess",
    "Workload",
    "assert_exact",
    "ledger_diff",
    "stripe_id",
]


def _records_counted(port: int) -> float | None:
    """The sum of ``meterstream_events_total`` on a worker's /metrics (None: no answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                    timeout=5) as resp:
            page = resp.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("meterstream_events_total{"))


class SinkProcess(ChildProcess):
    """A ``meterstream sink`` subprocess and the port of its /metrics."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, log_start: int, *,
                 metrics_port: int) -> None:
        super().__init__(proc, log_path, log_start)
        self.metrics_port = metrics_port

    async def wait_running(self, timeout_s: float = 120.0) -> None:
        """Until the sink has loaded the customers and subscribed (its log says so)."""
        await wait_until_async(lambda: " sink running: " in self.log_text(),
                               timeout_s=timeout_s, what="sink", child=self)


@dataclass
class ChaosRun:
    """A pipeline (``env``) billing into ``fake``; see the module docstring."""

    env: PipelineEnv
    fake: FakeStripe | FakeMetronome
    stripe_key: str
    """The engine's credential: a Stripe key, or the Metronome bearer token."""
    mode: str = "v2"
    rate_limit_per_s: int = 1000
    stripe_timeout_s: float = 3.0
    sink_extra_env: dict[str, str] = field(default_factory=dict)
    """More ``METERSTREAM_STRIPE__*`` settings, for the sink only (the worker would
    validate a Stripe section without a key and refuse to start)."""
    sinks: list[SinkProcess] = field(default_factory=list)

    def start_worker(self, name: str = "w1", *, web_port: int = 0) -> WorkerProcess:
        """``env.start_worker``: a worker on ``web_port`` (0: a free one)."""
        return self.env.start_worker(name, web_port=web_port)

    @property
    def engine(self) -> str:
        return "metronome" if isinstance(self.fake, FakeMetronome) else "stripe"

    @property
    def sink_env(self) -> dict[str, str]:
        if self.engine == "metronome":
            return {
                **self.env.env,
                "METERSTREAM_SINK__ENGINE": "metronome",
                "METERSTREAM_METRONOME__API_TOKEN": self.stripe_key,
                "METERSTREAM_METRONOME__API_BASE": self.fake.url,
                "METERSTREAM_METRONOME__RATE_LIMIT_PER_S": str(self.rate_limit_per_s),
                "METERSTREAM_METRONOME__TIMEOUT_S": str(self.stripe_timeout_s),
                **self.sink_extra_env,
            }
        return {
            **self.env.env,
            "METERSTREAM_STRIPE__MODE": self.mode,
            "METERSTREAM_STRIPE__API_KEY": self.stripe_key,
            "METERSTREAM_STRIPE__API_BASE": self.fake.url,
            "METERSTREAM_STRIPE__RATE_LIMIT_PER_S": str(self.rate_limit_per_s),
            "METERSTREAM_STRIPE__TIMEOUT_S": str(self.stripe_timeout_s),
            **self.sink_extra_env,
        }

    @property
    def settings(self) -> Settings:
        return self.env.settings()

    @property
    def log_paths(self) -> list[Path]:
        """Every log the run's processes wrote (workers and sinks)."""
        return [w.log_path for w in self.env.workers] + [s.log_path for s in self.sinks]

    def start_sink(self) -> SinkProcess:
        """Start a sink; every sink of a run appends to the same log."""
        log_path = self.env.workdir / "sink.log"
        (port,) = free_ports(1)
        proc, log_start = spawn(
            [sys.executable, "-m", "streams", "sink", "--metrics-port", str(port)],
            log_path=log_path, env={**os.environ, **self.sink_env}, cwd=self.env.workdir)
        sink = SinkProcess(proc, log_path, log_start, metrics_port=port)
        self.sinks.append(sink)
        return sink

    def stop_all(self) -> None:
        for s in self.sinks:
            s.stop(timeout_s=30)
        self.env.stop_all()

    async def publish_customers(self, customers: Iterable[str]) -> None:
        """One customer record per customer: a Stripe sink bills ``cus_<customer>``, a
        Metronome sink the ingest alias ``acct_<customer>``."""
        await self.env.produce(
            ((c.encode(), orjson.dumps({"schema": "customer.v1", "customer": c,
                                        "stripe_customer_id": stripe_id(c),
                                        "metronome_ingest_alias": metronome_alias(c)}))
             for c in customers), topic=self.settings.topics.customers)

    async def feed(self, records: list[tuple[bytes, bytes]], *, duration_s: float,
                   chunks: int = 100, gate: asyncio.Event | None = None,
                   parked: asyncio.Event | None = None) -> None:
        """Produce ``records`` in order, spread evenly over about ``duration_s`` seconds,
        each chunk acknowledged before the next.

        ``gate``: wait for it before each chunk; ``parked`` is set while waiting there, so
        a test can clear the gate, await ``parked`` and know that nothing is in flight
        (the feed is not the subject of a broker outage; the producer SDK's spool is).
        """
        from streams.kafka.client import connection_options

        producer = AIOKafkaProducer(**connection_options(self.settings.kafka),
                                    enable_idempotence=True, acks="all", linger_ms=20,
                                    compression_type="lz4")
        await producer.start()
        started = time.monotonic()
        try:
            size = max(1, -(-len(records) // chunks))
            for n, first in enumerate(range(0, len(records), size)):
                if gate is not None and not gate.is_set():
                    if parked is not None:
                        parked.set()
                    await gate.wait()
                    if parked is not None:
                        parked.clear()
                pending = [await producer.send(self.settings.topics.events, key=k, value=v)
                           for k, v in records[first:first + size]]
                await asyncio.gather(*pending)
                ahead = started + duration_s * (n + 1) / chunks - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            if parked is not None:
                parked.set()
            await producer.stop()

    def diff(self, truth: GroundTruth) -> LedgerDiff:
        prefix = "acct_" if self.engine == "metronome" else "cus_"
        return ledger_diff(self.fake.ledger.totals(), truth.totals, self.settings,
                           customer_prefix=prefix)

    async def settle(self, truth: GroundTruth, *, timeout_s: float = 600.0,
                     quiet_s: float | None = None) -> LedgerDiff:
        """Wait until the ledger is exact and nothing is left to send; return the diff.

        Exact at one moment is not enough: a replay could still bill twice afterwards. So
        once the ledger matches, wait until the worker's group has committed the events
        topic up to where it stood then, and the sink's group the summaries topic up to
        where *that* stood; the returned diff is taken after both.

        A ledger that is not exact is returned (for the caller to assert on) after
        ``timeout_s``, or earlier once the pipeline is at rest: the ledger unchanged for
        ``quiet_s`` while both groups have committed everything there is. The default
        quiet time is a window plus the grace period plus 30 s: corrections of late events
        wait in the worker until the watermark crosses the next window boundary.
        """
        if quiet_s is None:
            quiet_s = self.env.window_s + self.env.grace_s + 30.0
        deadline = time.monotonic() + timeout_s
        s = self.settings
        sink_group = sink_group_id(s)
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.check_alive()
            diff = self.diff(truth)
            if diff.exact:
                break
            count = self.fake.ledger.accepted_count
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > quiet_s and await self._at_rest():
                return diff
            await asyncio.sleep(1.0)
        else:
            return self.diff(truth)
        events_end = await self.end_offsets(s.topics.events)
        await self.wait_committed(s.worker.app_id, s.topics.events, events_end, deadline)
        summaries_end = await self.end_offsets(s.topics.summaries)
        await self.wait_committed(sink_group, s.topics.summaries, summaries_end, deadline)
        return self.diff(truth)

    async def _at_rest(self) -> bool:
        s = self.settings
        for group, topic in ((s.worker.app_id, s.topics.events),
                             (sink_group_id(s), s.topics.summaries)):
            ends = await self.end_offsets(topic)
            got = await self.committed(group, topic)
            if any(got.get(p, 0) < o for p, o in ends.items()):
                return False
        return True

    async def verdict(self, truth: GroundTruth, diff: LedgerDiff) -> None:
        """Assert the pass mark; when it fails, say whether the summaries the worker wrote
        were already wrong (the aggregator's fault) or only the ledger is (the sink's)."""
        if diff.exact and diff.pairs > 0:
            return
        summaries = await read_topic(self.env.bootstrap, self.settings.topics.summaries,
                                     kafka=self.settings.kafka, quiet_s=2, timeout_s=120)
        by_id = {m["id"]: m for m in summaries}
        topic = totals_from_summaries(by_id)
        wrong = {k: (truth.totals.get(k, Decimal(0)), topic.get(k, Decimal(0)))
                 for k in set(truth.totals) | set(topic)
                 if truth.totals.get(k, Decimal(0)) != topic.get(k, Decimal(0))}
        counted = {}
        for w in self.env.workers:
            if w.alive():
                counted[f"{w.log_path.stem} (pid {w.pid})"] = await asyncio.to_thread(
                    _records_counted, w.web_port)
        raise AssertionError(
            f"{diff}\nusage.summaries itself ({len(by_id)} distinct summaries) differs from "
            f"the ground truth for {len(wrong)} pairs (want, got): {sorted(wrong.items())[:6]}"
            f"\nrecord outcomes counted by each running worker since it started (accepted, "
            f"late, duplicate, replayed, invalid; the workload has {truth.records} records): "
            f"{counted}")

    def check_alive(self) -> None:
        """Fail fast, with its log, when the newest worker or sink died on its own."""
        newest: list[tuple[str, ChildProcess]] = [
            (what, procs[-1]) for what, procs in (("worker", self.env.workers),
                                                  ("sink", self.sinks)) if procs]
        for what, proc in newest:
            if not proc.alive():
                raise proc.exited_error(what)

    # -- offsets ------------------------------------------------------------------------

    async def _consumer(self, group_id: str | None) -> AIOKafkaConsumer:
        from streams.kafka.client import connection_options

        consumer = AIOKafkaConsumer(**connection_options(self.settings.kafka),
                                    group_id=group_id, enable_auto_commit=False)
        await consumer.start()
        return consumer

    async def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = await self._consumer(None)
        try:
            tps = [TopicPartition(topic, p) for p in range(self.env.partitions)]
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            return {tp.partition: o for tp, o in ends.items()}
        finally:
            await consumer.stop()

    async def committed(self, group_id: str, topic: str) -> dict[int, int]:
        consumer = await self._consumer(group_id)
        try:
            out = {}
            for p in range(self.env.partitions):
                offset: Any = await consumer.committed(TopicPartition(topic, p))
                out[p] = int(offset or 0)
            return out
        finally:
            await consumer.stop()

    async def wait_committed(self, group_id: str, topic: str, target: Mapping[int, int],
                             deadline: float) -> None:
        """Until ``group_id`` has committed at least ``target`` on every partition."""
        while True:
            self.check_alive()
            got = await self.committed(group_id, topic)
            if all(got.get(p, 0) >= o for p, o in target.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group_id} committed {got} on {topic}, "
                                   f"not yet {dict(target)}")
            await asyncio.sleep(1.0)
