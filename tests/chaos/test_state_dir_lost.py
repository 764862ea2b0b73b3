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
import time

import pytest

from streams.kafka.local.process import free_ports
from streams.testing.chaos import ChaosReport, Workload, wait_ready

FEED_S = 40


@pytest.mark.quick
@pytest.mark.timeout(900)
async def test_state_dir_deleted(kafka_bootstrap: str, make_run,
                                 chaos_report: ChaosReport) -> None:
    run = make_run(kafka_bootstrap)
    await run.env.create_topics()
    workload = Workload.make(seed=77, events=8_000, customers=40, span_s=FEED_S,
                             end_ms=int(time.time() * 1000) + (FEED_S - 70) * 1000)
    await run.publish_customers(workload.customers)
    (port,) = free_ports(1)
    worker = run.start_worker(web_port=port)
    await wait_ready(port, worker)
    run.start_sink()
    feed = asyncio.create_task(run.feed(workload.records, duration_s=FEED_S))
    try:
        await asyncio.sleep(FEED_S / 2)
        run.check_alive()
        assert await asyncio.to_thread(worker.stop, 60.0) == 0
        state_bytes = sum(p.stat().st_size for p in worker.state_dir.rglob("*") if p.is_file())
        await asyncio.to_thread(shutil.rmtree, worker.state_dir)
        worker = run.start_worker(web_port=port)
        restore_s = await wait_ready(port, worker)
        await feed
    finally:
        feed.cancel()
    diff = await run.settle(workload.truth, timeout_s=600)
    chaos_report.row(workload, diff, {"state_dir_deleted": 1},
                     state_bytes_deleted=state_bytes, ready_again_s=round(restore_s, 1))
    await run.verdict(workload.truth, diff)
    assert state_bytes > 0, "the deleted state directory held nothing"
