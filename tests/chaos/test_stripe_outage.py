"""Scenario 5: Stripe is down, then flaky, while summaries keep coming.

Once the sink is sending, the fake Stripe goes down: first it refuses connections (its
listening socket closed, keep-alive connections cut), then it answers every request with
503. The full variant stays down for a real minute, the quick one (CI) for 10 s. Then
Stripe comes back flaky: 15% 429, 5% 500, 3% timeouts (held past the client's timeout,
applied half of the time) and 2% dropped connections, until the end. The sink must keep
everything uncommitted while Stripe is away, retry with backoff, and in the end Stripe's
ledger must equal the ground truth exactly.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.fakes.stripe import FakeStripe, Faults
from streams.testing.verdict import Workload

FLAKY = Faults(rate_429=0.15, rate_500=0.05, rate_timeout=0.03, rate_drop=0.02,
               timeout_hold_s=3.0)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("down_s", [pytest.param(10, marks=pytest.mark.quick, id="down-10s"),
                                    pytest.param(60, id="down-60s")])
async def test_stripe_down_then_flaky(kafka_bootstrap: str, scenario, fake_stripe: FakeStripe,
                                      down_s: int) -> None:
    quick = down_s < 60
    workload = Workload.make(seed=55, events=4_000 if quick else 9_000,
                             customers=20 if quick else 45, span_s=12 * 60)
    s = await scenario(kafka_bootstrap, workload, mode="v1",
                       stripe_timeout_s=2.0).start(wait_sink=True)
    await s.billed(100, timeout_s=180, message="the sink never started sending")

    accepted_before = fake_stripe.ledger.accepted_count
    down_began = time.monotonic()
    await fake_stripe.set_down("refuse")
    await asyncio.sleep(down_s / 2)
    await fake_stripe.set_down("503")
    await asyncio.sleep(down_s / 2)
    accepted_while_down = fake_stripe.ledger.accepted_count - accepted_before
    refused_503 = fake_stripe.stats["status_counts"].get("503", 0)
    fake_stripe.set_faults(FLAKY, seed=5)
    await fake_stripe.set_down("up")
    down_for = time.monotonic() - down_began

    diff = await s.settle(timeout_s=900)
    stats = fake_stripe.stats
    await s.verdict(diff, {"stripe_down_s": round(down_for, 1), **stats["faults"]},
                    answered_503=refused_503, stripe_requests=stats["requests"])
    assert accepted_while_down == 0
    assert refused_503 > 0, "no request reached Stripe while it answered 503"
    assert all(stats["faults"][kind] > 0 for kind in ("429", "500", "timeout")), stats
