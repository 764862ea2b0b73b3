"""Scenario 4: a second worker joins, then the first one leaves.

Events arrive continuously. Worker 1 owns all 8 partitions; worker 2 joins and the group
rebalances (worker 2 takes half the partitions and restores their state from the
changelog); then worker 1 stops (SIGTERM) and, once its static membership's session has
timed out, worker 2 takes everything over, restoring the rest. Pass mark: the ledger
equals the ground truth exactly.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from streams.kafka.local.process import free_ports
from streams.testing.chaos import ChaosReport, Workload, wait_ready

FEED_S = 120


@pytest.mark.timeout(1200)
async def test_second_worker_joins_first_leaves(kafka_bootstrap: str, make_run,
                                                chaos_report: ChaosReport) -> None:
    run = make_run(kafka_bootstrap, partitions=8)
    await run.env.create_topics()
    workload = Workload.make(seed=44, events=18_000, customers=80, span_s=FEED_S,
                             end_ms=int(time.time() * 1000) + (FEED_S - 70) * 1000)
    await run.publish_customers(workload.customers)
    port1, port2 = free_ports(2)
    first = run.start_worker("w1", web_port=port1)
    await wait_ready(port1, first)
    run.start_sink()
    feed = asyncio.create_task(run.feed(workload.records, duration_s=FEED_S))
    try:
        await asyncio.sleep(20)
        second = run.start_worker("w2", web_port=port2)
        await wait_ready(port2, second)
        await wait_ready(port1, first)  # the group has settled on both
        await asyncio.sleep(20)
        run.check_alive()
        first_exit = await asyncio.to_thread(first.stop, 60.0)
        await wait_ready(port2, second)
        await feed
    finally:
        feed.cancel()
    diff = await run.settle(workload.truth, timeout_s=900)
    second_log = second.log_path.read_text(errors="replace")
    chaos_report.row(workload, diff, {"worker_joined": 1, "worker_left": 1},
                     first_exit_code=first_exit)
    await run.verdict(workload.truth, diff)
    assert first_exit == 0
    # Worker 2 restored the state of partitions it took over from worker 1.
    restored = [int(n) for n in re.findall(r"restored (\d+) changelog records", second_log)]
    assert max(restored, default=0) > 0, restored
