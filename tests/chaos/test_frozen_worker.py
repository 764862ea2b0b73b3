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

import pytest

from streams.testing.verdict import Workload

FEED_S = 110
FREEZE_S = 35


@pytest.mark.quick
@pytest.mark.timeout(1500)
async def test_frozen_worker_is_fenced_and_loses_nothing(kafka_bootstrap: str,
                                                         scenario) -> None:
    s = await scenario(kafka_bootstrap, Workload.fed_over(
        FEED_S, seed=52, events=20_000, customers=80), partitions=8).start(
        preload=False, workers=("w1", "w2"))
    first, second = s.run.env.workers
    async with s.feeding(FEED_S):
        for _ in range(2):
            await asyncio.sleep(10)
            s.run.check_alive()
            first.freeze()
            try:
                await asyncio.sleep(FREEZE_S)
            finally:
                first.thaw()
            await first.wait_ready()
    diff = await s.settle(timeout_s=900)
    await s.verdict(diff, {"worker_frozen": 2, "frozen_s": FREEZE_S})
    assert first.alive() and second.alive()
    first_log = first.log_path.read_text(errors="replace")
    # Worker 1 was really fenced (its producer refused) or saw its partitions taken away.
    assert "fenced" in first_log or "Revoking" in first_log, first_log[-3000:]
