"""The usage API with two workers: every customer's answer is right from either worker.

Two real ``meterstream worker`` processes share 8 partitions. A worker must forward
``GET /customers/{id}/usage`` to the worker that owns the customer's partition (the
partition its events were produced to; ``GET /partitions`` says who owns which), so both
workers give the same, exact
per-meter totals for every customer. With an API token configured, a request without the
token is refused with 401 and one with it answers 200, on the owner and through the
forwarding worker alike.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from streams.core.windows import period_of
from streams.kafka.local.process import free_ports
from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate
from streams.runtime.web import partition_of
from streams.testing.pipeline import PipelineEnv, WorkerProcess

TOKEN = "demo-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _get(session: aiohttp.ClientSession, url: str,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with session.get(url, headers=headers or {}) as resp:
        body = await resp.json(content_type=None) if resp.content_length != 0 else None
        return resp.status, body


async def _wait_ready(session: aiohttp.ClientSession, ports: list[int],
                      workers: list[WorkerProcess], timeout_s: float = 120) -> None:
    """Until every worker answers /ready with 200 and /partitions lists every worker as
    an owner (the group has rebalanced)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert all(w.alive() for w in workers), "a worker exited during start-up"
        try:
            ready = [(await _get(session, f"http://127.0.0.1:{p}/ready"))[0] for p in ports]
            owners = set()
            for p in ports:
                status, body = await _get(session, f"http://127.0.0.1:{p}/partitions", AUTH)
                if status == 200 and isinstance(body, dict):
                    owners |= set(body["owners"].values())
            if ready == [200] * len(ports) and len(owners) == len(ports):
                return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not become ready and balanced")
        await asyncio.sleep(0.5)


async def test_usage_from_both_workers_and_token(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=8,
                      extra_env={"METERSTREAM_WORKER__API_TOKEN": TOKEN})
    await env.create_topics()
    ports = free_ports(2)
    workers = [env.start_worker("w1", web_port=ports[0])]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            await _wait_ready(session, ports[:1], workers)
            workers.append(env.start_worker("w2", web_port=ports[1]))
            await _wait_ready(session, ports, workers)

            end_ms = int(time.time() * 1000) - 2_000
            truth = GroundTruth()
            spec = WorkloadSpec(events=3_000, customers=20, duplicate_rate=0.05, late_rate=0.0,
                                invalid_rate=0.0, span_ms=60_000, end_ms=end_ms, seed=11)
            await env.produce(generate(spec, truth))
            expected: dict[str, dict[str, Decimal]] = defaultdict(dict)
            for (customer, meter), total in truth.totals.items():
                expected[customer][meter] = total
            assert len(expected) == 20
            period = period_of(end_ms)

            def url(port: int, customer: str) -> str:
                return f"http://127.0.0.1:{port}/customers/{customer}/usage?period={period}"

            # The worker applies the events asynchronously: poll until it has them all.
            deadline = time.monotonic() + 120
            pending = dict(expected)
            while pending and time.monotonic() < deadline:
                for customer in list(pending):
                    status, body = await _get(session, url(ports[0], customer), AUTH)
                    got = {m: Decimal(v) for m, v in (body or {}).get("meters", {}).items()}
                    if status == 200 and got == pending[customer]:
                        del pending[customer]
                await asyncio.sleep(0.5)
            assert not pending, f"customers without the expected totals: {sorted(pending)}"

            owners: dict[str, int] = defaultdict(int)
            for customer, meters in expected.items():
                for port in ports:
                    status, body = await _get(session, url(port, customer), AUTH)
                    assert status == 200, (port, customer, status, body)
                    assert body["customer"] == customer and body["period"] == period
                    got = {m: Decimal(v) for m, v in body["meters"].items()}
                    assert got == meters, (port, customer, got, meters)
                    status, body = await _get(session, url(port, customer))
                    assert status == 401, (port, customer, status, body)
                    bad = {"Authorization": "Bearer wrong"}
                    status, _ = await _get(session, url(port, customer), bad)
                    assert status == 401
                status, routes = await _get(
                    session, f"http://127.0.0.1:{ports[0]}/partitions", AUTH)
                assert status == 200, routes
                owners[routes["owners"][str(partition_of(customer, 8))]] += 1
            # Both workers own some customers, so both answers above went through the
            # forwarding path for some customers.
            assert len(owners) == 2, owners
            # /health and /ready stay open without a token.
            for port in ports:
                assert (await _get(session, f"http://127.0.0.1:{port}/health"))[0] == 200
    finally:
        codes = [w.stop(timeout_s=30) for w in workers]
    assert codes == [0] * len(workers), codes
