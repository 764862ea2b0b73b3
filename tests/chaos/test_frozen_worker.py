"""Scenario: a worker is frozen past its session timeout, another takes over, and it thaws.

Two workers share 8 partitions under load. Worker 1 is frozen (SIGSTOP) for 35 s, longer
than its session timeout (10 s), so the group moves its partitions to worker 2, whose
transactional producers fence worker 1's. Worker 1 is then thawed (SIGCONT) in the middle
of whatever it was doing: its next commit is refused (fenced), it drops the batch, rejoins
and gets partitions back (restoring what worker 2 committed meanwhile). The freeze is
repeated once. Pass mark: the ledger equals the ground truth exactly (0 lost, 0 billed
twice), and worker 1 saw itself fenced.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.kafka.local.process import free_ports
from streams.testing.chaos import ChaosReport, Workload, wait_ready

FEED_S = 110
FREEZE_S = 35


@pytest.mark.quick
@pytest.mark.timeout(1500)
async def test_frozen_worker_is_fenced_and_loses_nothing(kafka_bootstrap: str, make_run,
                                                         chaos_report: ChaosReport) -> None:
    run = make_run(kafka_bootstrap, partitions=8)
    await run.env.create_topics()
    workload = Workload.make(seed=52, events=20_000, customers=80, span_s=FEED_S,
                             end_ms=int(time.time() * 1000) + (FEED_S - 70) * 1000)
    await run.publish_customers(workload.customers)
    port1, port2 = free_ports(2)
    first = run.start_worker("w1", web_port=port1)
    second = run.start_worker("w2", web_port=port2)
    await wait_ready(port1, first)
    await wait_ready(port2, second)
    run.start_sink()
    feed = asyncio.create_task(run.feed(workload.records, duration_s=FEED_S))
    try:
        for _ in range(2):
            await asyncio.sleep(10)
            run.check_alive()
            first.freeze()
            try:
                await asyncio.sleep(FREEZE_S)
            finally:
                first.thaw()
            await wait_ready(port1, first)
        await feed
    finally:
        feed.cancel()
    diff = await run.settle(workload.truth, timeout_s=900)
    chaos_report.row(workload, diff, {"worker_frozen": 2, "frozen_s": FREEZE_S})
    await run.verdict(workload.truth, diff)
    assert first.alive() and second.alive()
    first_log = first.log_path.read_text(errors="replace")
    # Worker 1 was really fenced (its producer refused) or saw its partitions taken away.
    assert "fenced" in first_log or "Revoking" in first_log, first_log[-3000:]
