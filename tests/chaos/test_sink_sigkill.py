"""Scenario 2: the sink is SIGKILLed while Stripe calls are in flight, and restarted.

The worker drains a workload with duplicates, late and invalid events over SASL_SSL; the
sink (v1: one call per meter event, each held 50 ms by the fake; v2: 20 events a call,
each held 1 s; 8 calls at a time) is killed three times at random points, each time
only once the fake sees calls in flight. A killed call may have
been applied by Stripe without the sink hearing of it, and nothing the sink did since
its last commit is committed: the restarted sink sends those summaries again under the
same identifiers, and Stripe's answer "already exists" counts as success. Pass mark: the
fake's ledger equals the ground truth exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from streams.fakes.stripe import FakeStripe
from streams.kafka.local import KafkaLocal
from streams.testing.verdict import Workload

KILLS = 3
# Per mode: the fake's hold of each call (s), and the sink's events per call (v2).
LATENCY_S = {"v1": 0.05, "v2": 1.0}
V2_BATCH = 20


async def wait_in_flight(fake: FakeStripe, accepted_before: int, timeout_s: float) -> None:
    """Until the fake holds a call in flight and accepted something new since
    ``accepted_before`` (the restarted sink is past its start-up and sending)."""
    deadline = time.monotonic() + timeout_s
    while not (fake.state.stats.in_flight > 0 and fake.ledger.accepted_count > accepted_before):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no call in flight (accepted {fake.ledger.accepted_count})")
        await asyncio.sleep(0.01)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", [pytest.param("v1", marks=pytest.mark.quick), "v2"])
async def test_sink_sigkill_mid_batch(kafka_sasl_ssl: KafkaLocal, sasl_env, scenario,
                                      fake_stripe: FakeStripe, mode: str) -> None:
    seed = int(os.environ.get("METERSTREAM_KILL_SEED", time.time()))
    print(f"sink kill seed {seed} (set METERSTREAM_KILL_SEED to replay it)")
    rng = random.Random(seed)
    s = scenario(kafka_sasl_ssl.sasl_bootstrap_servers,
                 Workload.make(seed=21, events=6_000, customers=30, span_s=12 * 60),
                 mode=mode, extra_env=sasl_env(kafka_sasl_ssl), stripe_timeout_s=5.0,
                 # BATCH_SIZE is a v2 setting: v1 refuses it at start.
                 sink_extra_env=({"METERSTREAM_STRIPE__BATCH_SIZE": str(V2_BATCH)}
                                 if mode == "v2" else {}))
    fake_stripe.set_faults(latency_s=LATENCY_S[mode])
    await s.start()
    sink = s.sink
    assert sink is not None
    kills: list[dict[str, object]] = []
    for _ in range(KILLS):
        await sink.wait_running()
        await wait_in_flight(fake_stripe, fake_stripe.ledger.accepted_count, 180)
        await asyncio.sleep(rng.uniform(0.0, 3.0))
        await wait_in_flight(fake_stripe, 0, 60)
        in_flight = fake_stripe.state.stats.in_flight
        await asyncio.to_thread(sink.kill)
        kills.append({"in_flight": in_flight, "accepted": fake_stripe.ledger.accepted_count})
        sink = s.run.start_sink()
    diff = await s.settle(timeout_s=600)
    stats = fake_stripe.stats
    resent = stats["idempotent_replays"] + stats["duplicates_rejected"]
    await s.verdict(diff, {"sink_sigkill": KILLS}, kills=kills, mode=mode,
                    resent_events=resent, stripe_requests=stats["requests"])
    assert all(int(k["in_flight"]) > 0 for k in kills)  # type: ignore[call-overload]
    # Events sent before a kill and not committed were sent again after it; Stripe
    # answered them from the idempotency key or as a duplicate identifier.
    assert resent > 0
