"""Scenario 1: the worker is SIGKILLed at 10 random points of one run.

Events arrive continuously (about 160 a second, event time about 70 s behind, with
duplicates, late and invalid records) while the worker is killed ten times, each time a
random 1-8 s after it became ready again, and restarted at once. Each restart keeps its
local state (committed data only, with the changelog offset it reflects) and restores
only the changelog's tail; static membership gives it its partitions back at once.
The sink (v2) bills what the worker's summaries say all along. Pass mark: the fake
Stripe's ledger equals the ground truth exactly. The kill timings come from a seed that
is printed; ``METERSTREAM_KILL_SEED`` replays it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from streams.testing.verdict import Workload

KILLS = 10
FEED_S = 150


@pytest.mark.timeout(1500)
async def test_worker_sigkill_ten_times(kafka_bootstrap: str, scenario) -> None:
    seed = int(os.environ.get("METERSTREAM_KILL_SEED", time.time()))
    print(f"worker kill seed {seed} (set METERSTREAM_KILL_SEED to replay it)")
    rng = random.Random(seed)
    s = await scenario(kafka_bootstrap, Workload.fed_over(
        FEED_S, seed=11, events=24_000, customers=80)).start(preload=False)
    worker = s.worker
    kills = []
    ready_s = []
    async with s.feeding(FEED_S):
        for _ in range(KILLS):
            delay = rng.uniform(1.0, 8.0)
            await asyncio.sleep(delay)
            s.run.check_alive()
            await asyncio.to_thread(worker.kill)
            kills.append(round(delay, 1))
            worker = s.run.start_worker(web_port=worker.web_port)
            ready_s.append(round(await worker.wait_ready(), 1))
    diff = await s.settle(timeout_s=900)
    await s.verdict(diff, {"worker_sigkill": KILLS}, kill_after_s=kills, ready_again_s=ready_s,
                    seed=seed)
    log = worker.log_path.read_text(errors="replace")
    assert "restoring it cold" not in log, "a restart discarded its local state"
