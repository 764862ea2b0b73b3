"""The sink's chaos scenarios against the fake Metronome (issue #14), in one run.

A worker (``SINK__ENGINE=metronome``, so its too_old bound is Metronome's) drains a
workload with duplicates, late and invalid records; a Metronome sink (10 summaries a
call, 4 calls at a time) bills it into the fake Metronome while the fake injects 429s,
500s, timeouts (held past the client's timeout, applied half of the time) and dropped
connections, each ingest held 0.5 s so that calls are in flight. Meanwhile, in turn:

1. the sink is SIGKILLed with calls in flight and restarted: what it sent and did not
   commit is sent again under the same transaction ids, which Metronome ignores;
2. Metronome is down: 503 for 2 s, then connections refused for 2 s;
3. the sink's token is revoked for 4 s (401: summaries held, nothing dead-lettered,
   probes every 2 s) and restored.

Pass marks: the fake's ledger equals the ground truth per
(customer, meter) exactly (nothing lost, nothing billed twice, each transaction id
accepted once), the summaries DLQ is empty, and ``meterstream reconcile`` against the
fake reports 0 differences for every period the workload touched.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import pytest

from streams.fakes.metronome import FakeMetronome, FakeMetronomeConfig, Faults
from streams.sink.reconcile import reconcile
from streams.testing.readback import read_topic
from streams.testing.verdict import Workload

FAULTS = Faults(rate_429=0.10, rate_500=0.06, rate_timeout=0.06, rate_drop=0.04,
                timeout_hold_s=3.0, latency_s=0.5)


@pytest.fixture
async def fake_metronome(chaos_secrets) -> AsyncIterator[FakeMetronome]:
    # The bearer token is the session's random key, so the log scan looks for it too.
    config = FakeMetronomeConfig(api_token=chaos_secrets.stripe_key, seed=14)
    async with FakeMetronome(config) as fake:
        yield fake


@pytest.mark.quick
@pytest.mark.timeout(600)
async def test_metronome_sink_faults_and_sigkill(kafka_bootstrap: str, chaos_secrets, scenario,
                                                 fake_metronome: FakeMetronome) -> None:
    fake = fake_metronome
    s = await scenario(kafka_bootstrap,
                       Workload.make(seed=14, events=2_400, customers=16, span_s=10 * 60),
                       fake=fake, extra_env={"METERSTREAM_SINK__ENGINE": "metronome"},
                       stripe_timeout_s=1.0, rate_limit_per_s=200,
                       sink_extra_env={"METERSTREAM_METRONOME__BATCH_SIZE": "10",
                                       "METERSTREAM_METRONOME__MAX_CONCURRENCY": "4",
                                       "METERSTREAM_METRONOME__AUTH_RETRY_S": "2"},
                       ).start(wait_sink=True)
    run, env, workload, sink = s.run, s.run.env, s.workload, s.sink
    assert sink is not None
    fake.set_faults(FAULTS, seed=14)
    # 1. SIGKILL with calls in flight.
    deadline = time.monotonic() + 120
    while not (fake.state.stats.in_flight > 0 and fake.ledger.accepted_count > 100):
        assert time.monotonic() < deadline, "the sink never had calls in flight"
        run.check_alive()
        await asyncio.sleep(0.01)
    in_flight = fake.state.stats.in_flight
    accepted_at_kill = fake.ledger.accepted_count
    await asyncio.to_thread(sink.kill)
    sink = run.start_sink()
    await sink.wait_running()
    requests_at_restart = fake.stats["requests"]
    while fake.stats["requests"] < requests_at_restart + 10:  # sending again
        assert time.monotonic() < deadline + 120, "the restarted sink never sent"
        run.check_alive()
        await asyncio.sleep(0.05)
    # 2. Down: 503, then connections refused.
    await fake.set_down("503")
    await asyncio.sleep(1)  # calls already past the switch (held 0.5 s) finish
    down_before = fake.ledger.accepted_count
    await asyncio.sleep(1)
    await fake.set_down("refuse")
    await asyncio.sleep(2)
    accepted_while_down = fake.ledger.accepted_count - down_before
    answered_503 = fake.stats["status_counts"].get("503", 0)
    await fake.set_down("up")
    # 3. The token revoked, then restored.
    await asyncio.sleep(2)
    fake.set_api_token("mtr_other_" + "0" * 32)
    await asyncio.sleep(1.5)  # calls already past the token check (held 0.5 s) finish
    revoked_before = fake.ledger.accepted_count
    await asyncio.sleep(4)
    accepted_while_revoked = fake.ledger.accepted_count - revoked_before
    refused_401 = fake.stats["status_counts"].get("401", 0)
    fake.set_api_token(chaos_secrets.stripe_key)

    diff = await s.settle(timeout_s=300)
    stats = fake.stats
    dead = await read_topic(env.bootstrap, env.settings().topics.summaries_dlq,
                            quiet_s=1, timeout_s=30)
    periods = sorted({time.strftime("%Y-%m", time.gmtime(t))
                      for t in (workload.spec.end_ms / 1000 - workload.spec.span_ms / 1000
                                - 3600, workload.spec.end_ms / 1000)})
    settings = env.settings(metronome={"api_token": chaos_secrets.stripe_key,
                                       "api_base": fake.url})
    out = io.StringIO()
    differences = 0
    for period in periods:
        result = await reconcile(settings, period, out=out)
        differences += len(result.differences)
    await s.verdict(diff, {"sink_sigkill": 1, "down_s": 4, "revoked_s": 4, **stats["faults"]},
                    engine="metronome", in_flight_at_kill=in_flight,
                    accepted_at_kill=accepted_at_kill, answered_503=answered_503,
                    refused_401=refused_401, duplicates_ignored=stats["duplicates_ignored"],
                    requests=stats["requests"], reconcile_differences=differences)
    assert in_flight > 0
    assert accepted_while_down == 0 and answered_503 > 0
    assert accepted_while_revoked == 0 and refused_401 > 0
    assert dead == [], dead[:3]
    assert differences == 0, out.getvalue()
    # Every accepted transaction id is distinct (the ledger is keyed by it) and none
    # matched no customer; some were sent again and ignored as duplicates.
    assert fake.ledger.unmatched == 0
    assert stats["duplicates_ignored"] > 0, stats
    assert all(stats["faults"][k] > 0 for k in ("429", "500", "timeout", "drop")), stats
