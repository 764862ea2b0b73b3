"""A chaos scenario's shared set-up and verdict, so that a scenario file holds only its
fault and its assertions.

Every scenario runs the same pipeline (tests/chaos/conftest.py's ``scenario`` fixture
builds the :class:`~streams.testing.chaos.ChaosRun`), in this order:

1. :meth:`Scenario.start`: the topics; the customers (a Stripe id and a Metronome alias
   each); with ``preload`` the whole workload produced up front; the workers, each
   awaited until ``/ready``; one sink (with ``wait_sink``, awaited until it runs);
2. the scenario's own load and fault: :meth:`Scenario.feeding` feeds the workload at a
   steady pace while the fault happens, :meth:`Scenario.billed` waits until the engine
   has accepted some usage (so the fault hits a sink that is billing);
3. :meth:`Scenario.settle`: until the ledger is exact and both consumer groups have
   committed everything (or the pipeline is at rest);
4. :meth:`Scenario.verdict`: the report row (printed, and appended to
   ``METERSTREAM_CHAOS_REPORT`` when set), then the pass mark: 0 usage lost and 0 billed
   twice against the fake engine's ledger, with a diagnosis when it fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Self

from streams.fakes.metronome import FakeMetronome
from streams.fakes.stripe import FakeStripe
from streams.testing.chaos import ChaosReport, ChaosRun, SinkProcess
from streams.testing.pipeline import WorkerProcess
from streams.testing.verdict import LedgerDiff, Workload

__all__ = ["Scenario"]


class Scenario:
    """One scenario: a ``run`` billing ``workload`` into its fake, judged into ``report``."""

    def __init__(self, run: ChaosRun, workload: Workload, report: ChaosReport) -> None:
        self.run = run
        self.workload = workload
        self.report = report
        self.sink: SinkProcess | None = None

    @property
    def fake(self) -> FakeStripe | FakeMetronome:
        return self.run.fake

    @property
    def worker(self) -> WorkerProcess:
        """The newest worker."""
        return self.run.env.workers[-1]

    async def start(self, *, preload: bool = True, workers: Iterable[str] = ("w1",),
                    wait_sink: bool = False) -> Self:
        """Steps 1 (see the module docstring): topics, customers, the workload if
        ``preload``, the named workers (all started, then each awaited), one sink."""
        await self.run.env.create_topics()
        await self.run.publish_customers(self.workload.customers)
        if preload:
            await self.run.env.produce(self.workload.records)
        started = [self.run.start_worker(name) for name in workers]
        for worker in started:
            await worker.wait_ready()
        self.sink = self.run.start_sink()
        if wait_sink:
            await self.sink.wait_running()
        return self

    @asynccontextmanager
    async def feeding(self, duration_s: float, *, gate: asyncio.Event | None = None,
                      parked: asyncio.Event | None = None) -> AsyncIterator[asyncio.Task[None]]:
        """Feed the workload over ``duration_s`` (:meth:`ChaosRun.feed`, with its ``gate``
        and ``parked``) while the block runs; the block's end awaits the rest of the
        feed, and an error in the block cancels it."""
        feed = asyncio.create_task(self.run.feed(self.workload.records, duration_s=duration_s,
                                                 gate=gate, parked=parked))
        try:
            yield feed
            await feed
        finally:
            feed.cancel()

    async def billed(self, accepted: int, *, timeout_s: float, message: str,
                     every_s: float = 0.1) -> None:
        """Until the fake has accepted ``accepted`` calls; fails with ``message`` after
        ``timeout_s``, and at once with its log when the worker or the sink died."""
        deadline = time.monotonic() + timeout_s
        while self.fake.ledger.accepted_count < accepted:
            assert time.monotonic() < deadline, message
            self.run.check_alive()
            await asyncio.sleep(every_s)

    async def settle(self, timeout_s: float) -> LedgerDiff:
        """Step 3: :meth:`ChaosRun.settle` on the workload's ground truth."""
        return await self.run.settle(self.workload.truth, timeout_s=timeout_s)

    async def verdict(self, diff: LedgerDiff, faults: Mapping[str, object],
                      **extra: object) -> None:
        """Step 4: the report row (``faults`` and ``extra`` in it), then the pass mark."""
        self.report.row(self.workload, diff, faults, **extra)
        await self.run.verdict(self.workload.truth, diff)
