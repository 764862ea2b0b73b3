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
from pathlib import Path

import pytest

from streams.fakes.stripe import FakeStripe
from streams.kafka.local import KafkaLocal
from streams.kafka.local.process import free_ports
from streams.testing.chaos import ChaosReport, Workload, wait_ready

FEED_S = 90
DOWN_S = 15


@pytest.mark.timeout(1200)
async def test_broker_restart_mid_stream(tmp_path: Path, sasl_env, make_run,
                                         fake_stripe: FakeStripe,
                                         chaos_report: ChaosReport) -> None:
    broker = KafkaLocal(tmp_path / "broker", sasl_ssl=True, heap_mb=384)
    await asyncio.to_thread(broker.start, 120)
    run = make_run(broker.sasl_bootstrap_servers, extra_env=sasl_env(broker))
    try:
        await run.env.create_topics()
        workload = Workload.make(seed=33, events=15_000, customers=60, span_s=FEED_S,
                                 end_ms=int(time.time() * 1000) + (FEED_S - 70) * 1000)
        await run.publish_customers(workload.customers)
        (port,) = free_ports(1)
        worker = run.start_worker(web_port=port)
        await wait_ready(port, worker)
        run.start_sink()
        gate, parked = asyncio.Event(), asyncio.Event()
        gate.set()
        feed = asyncio.create_task(run.feed(workload.records, duration_s=FEED_S, gate=gate,
                                            parked=parked))
        try:
            deadline = time.monotonic() + 240
            while fake_stripe.ledger.accepted_count < 50:
                assert time.monotonic() < deadline, "nothing billed before the restart"
                run.check_alive()
                await asyncio.sleep(0.5)
            gate.clear()
            await parked.wait()
            accepted_at_stop = fake_stripe.ledger.accepted_count
            began = time.monotonic()
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(broker.start, 120)
            down_for = time.monotonic() - began
            gate.set()
            await feed
        finally:
            feed.cancel()
        diff = await run.settle(workload.truth, timeout_s=900)
        restarts = {"worker": len(run.env.workers) - 1, "sink": len(run.sinks) - 1}
        chaos_report.row(workload, diff, {"broker_restart": 1, "broker_down_s": round(down_for)},
                         accepted_at_stop=accepted_at_stop, process_restarts=restarts)
        await run.verdict(workload.truth, diff)
        assert fake_stripe.ledger.accepted_count > accepted_at_stop
    finally:
        await asyncio.to_thread(run.stop_all)  # while the broker still answers
        await asyncio.to_thread(broker.close)
