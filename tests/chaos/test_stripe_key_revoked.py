"""Scenario 8: Stripe refuses the sink's key for a while (revoked, then restored).

Once the sink is billing, the fake Stripe stops accepting its key: every call gets 401.
The sink must hold every summary (no dead letter, no commit), say so (ERROR log,
``meterstream_sink_stripe_auth_failing`` = 1) and probe slowly (here every 5 s, by
``METERSTREAM_STRIPE__AUTH_RETRY_S``) instead of calling Stripe for each summary. When
the key is accepted again, billing resumes by itself. Pass mark: the ledger equals the
ground truth, and the summaries DLQ is empty.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from streams.fakes.stripe import FakeStripe
from streams.testing.chaos import SinkProcess
from streams.testing.readback import read_topic
from streams.testing.verdict import Workload

REVOKED_S = 30
RETRY_S = 5


def auth_failing(sink: SinkProcess) -> float | None:
    url = f"http://127.0.0.1:{sink.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            page = resp.read().decode()
    except OSError:
        return None
    for line in page.splitlines():
        if line.startswith("meterstream_sink_stripe_auth_failing "):
            return float(line.split()[1])
    return None


async def wait_metric(sink: SinkProcess, want: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await asyncio.to_thread(auth_failing, sink) != want:
        assert time.monotonic() < deadline, f"auth_failing never became {want}"
        await asyncio.sleep(0.5)


@pytest.mark.timeout(900)
async def test_stripe_key_revoked_then_restored(kafka_bootstrap: str, scenario, chaos_secrets,
                                                fake_stripe: FakeStripe) -> None:
    s = await scenario(kafka_bootstrap,
                       Workload.make(seed=88, events=9_000, customers=45, span_s=12 * 60),
                       mode="v1",
                       sink_extra_env={"METERSTREAM_STRIPE__AUTH_RETRY_S": str(RETRY_S)},
                       ).start(wait_sink=True)
    sink = s.sink
    assert sink is not None
    await s.billed(100, timeout_s=180, message="the sink never started sending")

    fake_stripe.set_api_key("sk_test_" + "0" * 40)  # ours is no longer accepted
    await wait_metric(sink, 1.0, 60)
    accepted = fake_stripe.ledger.accepted_count
    refused_before = fake_stripe.stats["status_counts"].get("401", 0)
    await asyncio.sleep(REVOKED_S)
    probes = fake_stripe.stats["status_counts"].get("401", 0) - refused_before
    assert fake_stripe.ledger.accepted_count == accepted
    fake_stripe.set_api_key(chaos_secrets.stripe_key)

    diff = await s.settle(timeout_s=600)
    dead = await read_topic(s.run.env.bootstrap, s.run.settings.topics.summaries_dlq,
                            quiet_s=2, timeout_s=60)
    await s.verdict(diff, {"stripe_key_revoked_s": REVOKED_S}, probes_while_revoked=probes,
                    summaries_dead_lettered=len(dead))
    assert dead == [], "a refused key must not dead-letter summaries"
    # At most the calls in flight (8) probe, each once per RETRY_S (+1 for the first).
    assert 0 < probes <= 8 * (REVOKED_S / RETRY_S + 1)
    assert await asyncio.to_thread(auth_failing, sink) == 0.0
    assert "refused the API key (HTTP 401)" in sink.log_text()
