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

import pytest

from streams.testing.verdict import Workload

FEED_S = 120


@pytest.mark.timeout(1200)
async def test_second_worker_joins_first_leaves(kafka_bootstrap: str, scenario) -> None:
    s = await scenario(kafka_bootstrap, Workload.fed_over(
        FEED_S, seed=44, events=18_000, customers=80), partitions=8).start(preload=False)
    first = s.worker
    async with s.feeding(FEED_S):
        await asyncio.sleep(20)
        second = s.run.start_worker("w2")
        await second.wait_ready()
        await first.wait_ready()  # the group has settled on both
        await asyncio.sleep(20)
        s.run.check_alive()
        first_exit = await asyncio.to_thread(first.stop, 60.0)
        await second.wait_ready()
    diff = await s.settle(timeout_s=900)
    second_log = second.log_path.read_text(errors="replace")
    await s.verdict(diff, {"worker_joined": 1, "worker_left": 1}, first_exit_code=first_exit)
    assert first_exit == 0
    # Worker 2 restored the state of partitions it took over from worker 1.
    restored = [int(n) for n in re.findall(r"restored (\d+) changelog records", second_log)]
    assert max(restored, default=0) > 0, restored
