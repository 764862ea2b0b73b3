"""The aggregator against the real broker: 200,000 events, exact totals, DLQ and alerts.

The workload: 1,000 customers (Zipf), 4 meters, 5% duplicates, 3% late (half past the
grace period, so they become corrections), 2% invalid records of 8 kinds. The worker runs
as a real ``meterstream worker`` process. Once every window has closed (tick records on
idle partitions), the distinct summaries on usage.summaries must add up, per customer and
meter, to the ground truth exactly; the DLQ must hold the invalid records, reason by
reason; the alerts must be exactly the expected (customer, period, threshold) set.

The second test runs the same workload while the worker is killed with SIGKILL three
times at random points and restarted; the results must be identical.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate, totals_from_summaries
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic

EVENTS = 200_000


@pytest.fixture(scope="module")
def workload() -> tuple[list[tuple[bytes, bytes]], GroundTruth]:
    truth = GroundTruth()
    # Event time ends 70 s ago, so that once the drain is done the first tick (wall clock
    # minus the idle bound and grace) closes every window: no wait for the clock.
    spec = WorkloadSpec(
        events=EVENTS, customers=1000, duplicate_rate=0.05, late_rate=0.03,
        invalid_rate=0.02, span_ms=20 * 60_000, end_ms=int(time.time() * 1000) - 70_000,
        grace_ms=5_000, seed=7,
    )
    records = list(generate(spec, truth))
    return records, truth


def distinct_by_id(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Dedup by id; a repeated id must carry the same content (only emitted_at may differ)."""
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        body = {k: v for k, v in m.items() if k not in ("emitted_at_ms", "_partition", "_offset")}
        prev = out.setdefault(m["id"], body)
        assert prev == body, f"id {m['id']} carried two contents: {prev} vs {body}"
    return out


async def collect_and_check(env: PipelineEnv, truth: GroundTruth) -> dict[str, int]:
    s = env.settings()
    want = {k: v for k, v in truth.totals.items()}

    def totals_match(msgs: list[Any]) -> bool:
        return totals_from_summaries(distinct_by_id(msgs)) == want

    def difference(msgs: list[Any]) -> str:
        got = totals_from_summaries(distinct_by_id(msgs))
        wrong = sorted((k, got.get(k, Decimal(0)) - want.get(k, Decimal(0)))
                       for k in set(got) | set(want) if got.get(k) != want.get(k))
        over = sum(1 for _, d in wrong if d > 0)
        return (f"{len(wrong)} (customer, meter) totals differ, {over} of them too high; "
                f"first ones (got - want): {wrong[:8]}")

    summaries = await read_topic(env.bootstrap, s.topics.summaries, until=totals_match,
                                 quiet_s=6, timeout_s=600, describe=difference)
    distinct = distinct_by_id(summaries)
    got = totals_from_summaries(distinct)
    assert got == want
    assert all(Decimal(x["delta"]) >= 0 for x in distinct.values())

    n_invalid = sum(truth.dead_letters.values())
    dlq = await read_topic(env.bootstrap, s.topics.events_dlq,
                           until=lambda m: len({(d["source"]["partition"], d["source"]["offset"],
                                                 d["source"]["index"]) for d in m}) >= n_invalid,
                           quiet_s=2, timeout_s=120)
    unique_dlq = {(d["source"]["partition"], d["source"]["offset"], d["source"]["index"]): d
                  for d in dlq}
    assert Counter(d["reason"] for d in unique_dlq.values()) == truth.dead_letters

    alerts = await read_topic(env.bootstrap, s.topics.alerts, quiet_s=2, timeout_s=60)
    distinct_alerts = distinct_by_id(alerts)
    got_alerts = {(a["customer"], a["period"], a["threshold"]["id"])
                  for a in distinct_alerts.values()}
    assert got_alerts == truth.alerts
    assert truth.alerts, "the workload should cross some thresholds"
    finals = sum(1 for x in distinct.values() if x["kind"] == "final")
    corrections = sum(1 for x in distinct.values() if x["kind"] == "correction")
    assert corrections > 0, "late events past the grace period must produce corrections"
    return {"summaries": len(distinct), "finals": finals, "corrections": corrections,
            "alerts": len(distinct_alerts), "dead_letters": len(unique_dlq),
            "duplicate_summary_messages": len(summaries) - len(distinct)}


# These two drain 200,000 events each; on a loaded 2-core machine that took 7.5 min.
@pytest.mark.timeout(1500)
async def test_200k_events_exact_totals_dlq_and_alerts(
    kafka_bootstrap: str, tmp_path: Path, workload: tuple[list[tuple[bytes, bytes]], GroundTruth]
) -> None:
    records, truth = workload
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=4)
    await env.create_topics()
    await env.produce(records)
    worker = env.start_worker()
    try:
        stats = await collect_and_check(env, truth)
    finally:
        env.stop_all()
    print("pipeline stats:", stats, "truth:", truth.distinct_events, "distinct events")
    assert worker.proc.returncode == 0


@pytest.mark.timeout(1500)
async def test_sigkill_three_times_gives_identical_results(
    kafka_bootstrap: str, tmp_path: Path, workload: tuple[list[tuple[bytes, bytes]], GroundTruth]
) -> None:
    records, truth = workload
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=4)
    await env.create_topics()
    await env.produce(records)
    seed = int(os.environ.get("METERSTREAM_KILL_SEED", time.time()))
    print(f"kill timing seed {seed} (set METERSTREAM_KILL_SEED to replay it)")
    rng = random.Random(seed)
    worker = env.start_worker()
    kills = []
    try:
        for _ in range(3):
            # Kill mid-processing: once the worker is ready, after a random 1-10 s.
            await worker.wait_ready(180)
            delay = rng.uniform(1.0, 10.0)
            await asyncio.sleep(delay)
            assert worker.alive(), worker.log_path.read_text()[-3000:]
            worker.kill()
            kills.append(round(delay, 1))
            worker = env.start_worker(web_port=worker.web_port)
        try:
            stats = await collect_and_check(env, truth)
        except TimeoutError as exc:
            tail = "\n".join(line for line in worker.log_path.read_text().splitlines()
                             if "DEBUG" not in line and "buffer full" not in line)[-4000:]
            raise AssertionError(f"{exc}\nkilled after {kills} s; last worker alive: "
                                 f"{worker.alive()}; its log ends:\n{tail}") from exc
    finally:
        env.stop_all()
    print("killed after", kills, "s; stats:", stats)
    log = (tmp_path / "worker-w1.log").read_text()
    # Every restart kept its local state and restored only the changelog's tail: at most
    # the last batch of each partition (a full restore would be one record per dedup mark,
    # about 200,000).
    restored = [int(n) for n in re.findall(r"restored (\d+) changelog records", log)]
    assert len(restored) >= 4, restored
    assert max(restored) < 20_000, restored
    assert "restoring it cold" not in log
