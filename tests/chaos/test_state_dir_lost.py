"""Scenario 7: the worker's state directory is deleted; recovery comes from changelogs alone.

Events arrive continuously. Mid-stream the worker is stopped cleanly (which would let
the next start reuse its RocksDB files), its state directory is removed, and a worker is
started again on the same settings: it has nothing local and must rebuild every window,
dedup mark and partition record from the state changelog before it goes on. Pass mark:
the ledger equals the ground truth exactly (a window rebuilt short would show as usage
lost, a forgotten dedup mark as usage billed twice).
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from streams.testing.verdict import Workload

FEED_S = 40


@pytest.mark.quick
@pytest.mark.timeout(900)
async def test_state_dir_deleted(kafka_bootstrap: str, scenario) -> None:
    s = await scenario(kafka_bootstrap, Workload.fed_over(
        FEED_S, seed=77, events=8_000, customers=40)).start(preload=False)
    worker = s.worker
    async with s.feeding(FEED_S):
        await asyncio.sleep(FEED_S / 2)
        s.run.check_alive()
        assert await asyncio.to_thread(worker.stop, 60.0) == 0
        state_bytes = sum(p.stat().st_size for p in worker.state_dir.rglob("*") if p.is_file())
        await asyncio.to_thread(shutil.rmtree, worker.state_dir)
        worker = s.run.start_worker(web_port=worker.web_port)
        restore_s = await worker.wait_ready()
    diff = await s.settle(timeout_s=600)
    await s.verdict(diff, {"state_dir_deleted": 1}, state_bytes_deleted=state_bytes,
                    ready_again_s=round(restore_s, 1))
    assert state_bytes > 0, "the deleted state directory held nothing"
