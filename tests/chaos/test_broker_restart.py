"""Scenario 3: the broker is restarted mid-stream while the worker and the sink run.

A private broker (KafkaLocal with a SASL_SSL listener, so the worker and the sink log in
again after the restart) serves the whole pipeline. Events arrive continuously; once the
worker is aggregating and the sink is billing, the broker is stopped (controlled
shutdown), left down for 15 s and started again on the same ports and data dir. The
feed is parked during the outage, so that the outage is the worker's and the sink's
(the producer SDK's spool is scenario 6). Pass mark: the ledger equals the ground truth.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.kafka.local import KafkaLocal
from streams.testing.verdict import Workload

FEED_S = 90
DOWN_S = 15


@pytest.mark.timeout(1200)
async def test_broker_restart_mid_stream(private_broker: KafkaLocal, sasl_env,
                                         scenario) -> None:
    broker = private_broker
    s = await scenario(broker.sasl_bootstrap_servers, Workload.fed_over(
        FEED_S, seed=33, events=15_000, customers=60),
        extra_env=sasl_env(broker)).start(preload=False)
    gate, parked = asyncio.Event(), asyncio.Event()
    gate.set()
    async with s.feeding(FEED_S, gate=gate, parked=parked):
        await s.billed(50, timeout_s=240, message="nothing billed before the restart",
                       every_s=0.5)
        gate.clear()
        await parked.wait()
        accepted_at_stop = s.fake.ledger.accepted_count
        began = time.monotonic()
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(broker.start, 120)
        down_for = time.monotonic() - began
        gate.set()
    diff = await s.settle(timeout_s=900)
    restarts = {"worker": len(s.run.env.workers) - 1, "sink": len(s.run.sinks) - 1}
    await s.verdict(diff, {"broker_restart": 1, "broker_down_s": round(down_for)},
                    accepted_at_stop=accepted_at_stop, process_restarts=restarts)
    assert s.fake.ledger.accepted_count > accepted_at_stop
