"""``meterstream import`` against a real broker, a local S3 server and a real worker.

1. S3 (moto's server on 127.0.0.1): JSON Lines, CSV, Parquet and .gz objects are imported
   into the events topic; reading the topic back gives exactly the expected events (ids,
   derived ids, values, times), and the bad rows are dead letters of stage ``import``.
2. A local directory is imported, imported again with the checkpoint (every file skipped)
   and again without it (every row re-sent, same ids): a real worker's summaries add up,
   per (customer, meter), to the ground truth exactly, and so do the fake Stripe's totals
   once the real sink has pushed them: nothing billed twice.
3. ``python -m streams import`` is SIGKILLed after its first checkpoints and rerun with
   the same checkpoint: the worker's summaries add up to the ground truth exactly.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from streams.config import Settings, StripeSettings
from streams.core.events import UsageEvent, decode_record
from streams.fakes.stripe import FakeStripe, FakeStripeConfig, MeterConfig
from streams.importer.run import Importer, ImportOptions
from streams.importer.sources import derived_event_id
from streams.loadgen.generate import totals_from_summaries
from streams.sink.engines.stripe_meter import make_meter_event_client
from streams.sink.sink import StripeSink
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_records, read_topic

METERS = ("cpu_seconds", "gpu_seconds", "memory_gb_seconds")
Totals = dict[tuple[str, str], Decimal]


# -- helpers ------------------------------------------------------------------------------


async def read_events(bootstrap: str, topic: str, expected: int,
                      timeout_s: float = 60.0) -> list[UsageEvent]:
    """Every event on ``topic`` (packed records unpacked); wait until ``expected`` arrived."""
    events: list[UsageEvent] = []
    decoded_records = 0

    def arrived(records: list[Any]) -> bool:
        nonlocal decoded_records
        for m in records[decoded_records:]:
            good, bad = decode_record(m.value, m.key.decode())
            assert not bad, bad
            events.extend(good)
        decoded_records = len(records)
        return len(events) >= expected

    # Once they are all there, nothing more must follow for a second.
    await read_records(bootstrap, topic, until=arrived, quiet_s=1.0, timeout_s=timeout_s)
    return events


def distinct_by_id(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        body = {k: v for k, v in m.items() if k not in ("emitted_at_ms", "_partition", "_offset")}
        assert out.setdefault(m["id"], body) == body
    return out


async def assert_summaries_match(env: PipelineEnv, truth: Totals) -> None:
    topic = env.settings().topics.summaries

    def done(msgs: list[dict[str, Any]]) -> bool:
        return totals_from_summaries(distinct_by_id(msgs)) == truth

    summaries = await read_topic(env.bootstrap, topic, until=done, quiet_s=4, timeout_s=240)
    assert totals_from_summaries(distinct_by_id(summaries)) == truth


def run_cli(env: PipelineEnv, *args: str | Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "streams", "import", *map(str, args),
                           "--no-progress"],
                          env={**os.environ, **env.env}, capture_output=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    summary: dict[str, Any] = orjson.loads(proc.stdout.splitlines()[-1])
    return summary


def spawn_import(env: PipelineEnv, *args: str | Path) -> subprocess.Popen[bytes]:
    """``python -m streams import ARGS --no-progress`` in the background (killable)."""
    return subprocess.Popen([sys.executable, "-m", "streams", "import", *map(str, args),
                             "--no-progress"], env={**os.environ, **env.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Rows:
    """A workload of recent events (windows close at once) and its ground truth."""

    def __init__(self, seed: int, customers: int) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"imp{seed}-c{i:03d}" for i in range(customers)]
        self.truth: Totals = defaultdict(Decimal)
        self.end_ms = int(time.time() * 1000) - 70_000

    def event(self, n: int, *, with_id: bool) -> dict[str, Any]:
        customer = self.rng.choice(self.customers)
        meter = self.rng.choice(METERS)
        value = Decimal(self.rng.randrange(0, 600_000)) / 1000
        self.truth[(customer, meter)] += value
        ev: dict[str, Any] = {"customer": customer, "meter": meter, "value": format(value, "f"),
                              "timestamp": self.end_ms - self.rng.randrange(0, 600_000)}
        if with_id:
            ev["id"] = f"{customer}-e{n}"
        return ev


def write_dir(root: Path, rows: Rows, per_file: int) -> None:
    """JSON Lines (with ids, a duplicate and a bad row), CSV.gz and Parquet (derived ids)."""
    root.mkdir(parents=True, exist_ok=True)
    jsonl = [rows.event(i, with_id=True) for i in range(per_file)]
    lines = [orjson.dumps(e) for e in jsonl]
    lines.insert(10, orjson.dumps(jsonl[3]))  # the same event twice: one is a duplicate
    lines.insert(20, b'{"customer":"x","meter":"cpu_seconds","value":1.5,"timestamp":1}')
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    csv_rows = [rows.event(i, with_id=False) for i in range(per_file)]
    body = "customer,meter,value,timestamp\n" + "".join(
        f"{e['customer']},{e['meter']},{e['value']},{e['timestamp']}\n" for e in csv_rows)
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "b.csv.gz").write_bytes(gzip.compress(body.encode()))
    pq_rows = [rows.event(i, with_id=False) for i in range(per_file)]
    table = pa.table({
        "customer": [e["customer"] for e in pq_rows], "meter": [e["meter"] for e in pq_rows],
        "value": pa.array([Decimal(e["value"]) for e in pq_rows], pa.decimal128(12, 3)),
        "timestamp": pa.array([e["timestamp"] for e in pq_rows], pa.timestamp("ms", tz="UTC")),
    })
    pq.write_table(table, root / "c.parquet")


# -- 1. S3 ------------------------------------------------------------------------------


@pytest.fixture
def s3_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def test_import_from_s3_all_formats(kafka_bootstrap: str, tmp_path: Path,
                                          s3_url: str) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2)
    await env.create_topics()
    settings: Settings = env.settings()
    ts = int(time.time() * 1000) - 3_600_000
    expected: dict[tuple[str, str], tuple[str, Decimal, int]] = {}

    jsonl = b"".join([
        b'{"id":"e-1","customer":"c-1","meter":"cpu_seconds","value":"12.5","timestamp":%d}\n'
        % ts,
        b'{"customer":"c-2","meter":"gpu_seconds","value":"0.000000000000001","timestamp":%d}\n'
        % (ts + 1),
        b'{"id":"e-bad","customer":"c-1","meter":"cpu_seconds","value":1.5,"timestamp":%d}\n'
        % ts,
    ])
    csv_body = ("id,customer,meter,value,timestamp\n"
                f"e-2,c-1,memory_gb_seconds,999999999999999,{ts}\n"
                f",c-3,cpu_seconds,0.1,{ts + 2}\n").encode()
    buf = io.BytesIO()
    pq.write_table(pa.table({
        "customer": ["c-4", "c-5"], "meter": ["cpu_seconds", "cpu_seconds"],
        "value": pa.array([Decimal("3.25"), Decimal("0.1")], pa.decimal128(10, 2)),
        "timestamp": pa.array([ts * 1000, ts * 1000], pa.timestamp("us", tz="UTC")),
    }), buf)
    float_buf = io.BytesIO()
    pq.write_table(pa.table({"customer": ["c-6"], "meter": ["cpu_seconds"], "value": [0.1],
                             "timestamp": [ts]}), float_buf)
    objects = {
        "in/2026/a.jsonl": jsonl,
        "in/2026/b.csv.gz": gzip.compress(csv_body),
        "in/2026/c.parquet": buf.getvalue(),
        "in/2026/d.jsonl.gz": gzip.compress(jsonl[: jsonl.index(b"\n") + 1].replace(
            b'"e-1"', b'"e-3"')),
        "in/2026/e.parquet": float_buf.getvalue(),
        "in/2026/readme.txt": b"not data",
        "other/x.jsonl": jsonl,
    }
    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket="usage")
    for key, body in objects.items():
        s3.put_object(Bucket="usage", Key=key, Body=body)

    import hashlib

    def digest(key: str) -> str:
        body = objects[key]
        return hashlib.sha256(gzip.decompress(body) if key.endswith(".gz") else body).hexdigest()

    expected = {
        ("c-1", "e-1"): ("cpu_seconds", Decimal("12.5"), ts),
        ("c-2", derived_event_id(digest("in/2026/a.jsonl"), 2)):
            ("gpu_seconds", Decimal("0.000000000000001"), ts + 1),
        ("c-1", "e-2"): ("memory_gb_seconds", Decimal("999999999999999"), ts),
        ("c-3", derived_event_id(digest("in/2026/b.csv.gz"), 3)):
            ("cpu_seconds", Decimal("0.1"), ts + 2),
        ("c-4", derived_event_id(digest("in/2026/c.parquet"), 1)):
            ("cpu_seconds", Decimal("3.25"), ts),
        ("c-5", derived_event_id(digest("in/2026/c.parquet"), 2)):
            ("cpu_seconds", Decimal("0.1"), ts),
        ("c-1", "e-3"): ("cpu_seconds", Decimal("12.5"), ts),
    }
    importer = Importer(settings, ImportOptions(
        source="s3://usage/in/", endpoint_url=s3_url, progress=False,
        checkpoint_path=tmp_path / "ck.json"))
    summary = await importer.run()
    assert summary.as_dict() | {"elapsed_s": 0, "rows_per_s": 0} == {
        "rows_read": 9, "imported": 7, "rejected": 2, "duplicates": 0, "files_done": 5,
        "files_skipped": 0, "files_failed": 0, "elapsed_s": 0, "rows_per_s": 0,
        "interrupted": False}

    events = await read_events(kafka_bootstrap, settings.topics.events, len(expected))
    got = {(e.customer, e.id): (e.meter, e.value, e.timestamp_ms) for e in events}
    assert len(events) == len(expected)
    assert got == expected

    dlq = await read_topic(kafka_bootstrap, settings.topics.events_dlq, quiet_s=1,
                           until=lambda m: len(m) >= 2, timeout_s=30)
    dead = sorted((d["source"]["file"], d["source"]["line"], d["reason"], d["stage"],
                   d["source"]["key"]) for d in dlq)
    assert dead == [("s3://usage/in/2026/a.jsonl", 3, "invalid_value", "import", "c-1"),
                    ("s3://usage/in/2026/e.parquet", 1, "invalid_value", "import", None)]

    # A second run with the checkpoint downloads and sends nothing.
    again = await Importer(settings, ImportOptions(
        source="s3://usage/in/", endpoint_url=s3_url, progress=False,
        checkpoint_path=tmp_path / "ck.json")).run()
    assert (again.files_skipped, again.imported, again.rows_read) == (5, 0, 0)


# -- 2. a directory imported twice ------------------------------------------------------


async def test_directory_imported_twice_bills_once(kafka_bootstrap: str,
                                                   tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2)
    await env.create_topics()
    rows = Rows(seed=2, customers=40)
    data = tmp_path / "data"
    write_dir(data, rows, per_file=4000)
    ck = tmp_path / "ck.json"
    rejects = tmp_path / "rejects.jsonl"

    first = run_cli(env, data, "--checkpoint", ck, "--rejects", rejects)
    assert (first["imported"], first["rejected"], first["duplicates"]) == (12_000, 1, 1)
    assert first["files_done"] == 3
    (reject,) = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert (reject["line"], reject["reason"]) == (21, "invalid_value")
    assert reject["file"] == (data / "a.jsonl").resolve().as_uri()

    second = run_cli(env, data, "--checkpoint", ck)
    assert (second["files_skipped"], second["imported"]) == (3, 0)
    # Without the checkpoint every row goes again, with the same ids: the aggregator's
    # dedup must absorb them.
    third = run_cli(env, data, "--rejects", rejects)
    assert third["imported"] == 12_000

    env.start_worker()
    try:
        await assert_summaries_match(env, dict(rows.truth))
    finally:
        env.stop_all()
    await assert_stripe_totals(env, dict(rows.truth))


async def assert_stripe_totals(env: PipelineEnv, truth: Totals) -> None:
    """Push the summaries through the real sink into the fake Stripe; compare its ledger."""
    customers = sorted({c for c, _m in truth})
    await env.produce(
        [(c.encode(), orjson.dumps({"schema": "customer.v1", "customer": c,
                                    "stripe_customer_id": f"cus_{c}"})) for c in customers],
        topic=env.settings().topics.customers,
    )
    want = {(f"cus_{c}", m): v for (c, m), v in truth.items() if v}
    meters = tuple(MeterConfig(id=f"mtr_{m}", event_name=m) for m in
                   ("cpu_seconds", "gpu_seconds", "memory_gb_seconds", "executions"))
    async with FakeStripe(FakeStripeConfig(meters=meters)) as fake:
        settings = env.settings(stripe=StripeSettings(
            mode="v2", api_base=fake.url, rate_limit_per_s=2000, max_concurrency=8))
        client = make_meter_event_client(settings.stripe)
        sink = StripeSink(settings, client)
        task = asyncio.create_task(sink.run())
        try:
            deadline = time.monotonic() + 180
            while {k: v for k, v in fake.ledger.totals().items() if v} != want:
                if task.done():
                    task.result()
                assert time.monotonic() < deadline, "the fake Stripe never matched the truth"
                await asyncio.sleep(0.5)
        finally:
            sink.stop()
            await task
            await client.aclose()
        assert {k: v for k, v in fake.ledger.totals().items() if v} == want


# -- 3. killed midway, resumed ----------------------------------------------------------


async def test_killed_import_resumes_with_exact_totals(kafka_bootstrap: str,
                                                       tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2)
    await env.create_topics()
    rows = Rows(seed=3, customers=50)
    total_rows = 60_000
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for i in range(total_rows):
            f.write(orjson.dumps(rows.event(i, with_id=i % 2 == 0)) + b"\n")
    ck = tmp_path / "ck.json"
    proc = spawn_import(env, path, "--checkpoint", ck, "--commit-rows", "2000", "--pack", "200")
    committed = 0
    deadline = time.monotonic() + 120
    while committed < 6000 and time.monotonic() < deadline and proc.poll() is None:
        await asyncio.sleep(0.02)
        if ck.exists():
            committed = max(orjson.loads(ck.read_bytes())["partial"].values(), default=0)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert 6000 <= committed < total_rows, committed

    resumed = run_cli(env, path, "--checkpoint", ck)
    assert resumed["files_done"] == 1
    assert resumed["rows_read"] <= total_rows - committed
    assert orjson.loads(ck.read_bytes())["partial"] == {}

    env.start_worker()
    try:
        await assert_summaries_match(env, dict(rows.truth))
    finally:
        env.stop_all()
    print(f"\nkilled after row {committed}; resumed with {resumed['rows_read']} rows")


# -- 4. watch mode ------------------------------------------------------------------------


async def test_watch_imports_new_files_and_stops_on_sigterm(kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=1)
    await env.create_topics()
    rows = Rows(seed=4, customers=3)
    data, ck = tmp_path / "incoming", tmp_path / "ck.json"
    data.mkdir()
    proc = spawn_import(env, data, "--watch", "--interval", "0.2", "--checkpoint", ck)

    async def files_done(n: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ck.exists() and len(orjson.loads(ck.read_bytes())["done"]) >= n:
                return
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{n} file(s) not imported")

    try:
        for i, name in enumerate(("a.jsonl", "b.jsonl")):
            # Written under a temporary name and renamed, as a producer of files should.
            tmp = data / f"{name}.part"
            tmp.write_bytes(b"".join(orjson.dumps(rows.event(i * 100 + j, with_id=True))
                                     + b"\n" for j in range(100)))
            tmp.rename(data / name)
            await files_done(i + 1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = orjson.loads(out.splitlines()[-1])
    assert (summary["files_done"], summary["imported"]) == (2, 200)
    events = await read_events(kafka_bootstrap, env.settings().topics.events, 200)
    assert len({(e.customer, e.id) for e in events}) == len(events) == 200
