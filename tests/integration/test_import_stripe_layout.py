"""``meterstream import --layout stripe``: the files of Stripe's S3 connector, from a
directory and from an S3 bucket (moto's server), become usage events of our meters and
customers (issue 13, item 7).

The files are in Stripe's documented layout: a JSON array, JSON Lines and CSV with
``identifier``, ``timestamp`` (Unix seconds), ``event_name`` and the payload
(``payload_stripe_customer_id``, ``payload_value`` columns in CSV). Event names are the
Stripe meters' (``cpu_time``), not our meter names (``cpu_seconds``); customers are
Stripe ids, mapped back through the customers topic.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import boto3
import orjson
import pytest

from streams.importer.run import Importer, ImportOptions
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic
from tests.integration.test_import import read_events, run_cli, s3_url  # noqa: F401

pytestmark = pytest.mark.integration

METERS = orjson.dumps([
    {"name": "cpu_seconds", "stripe_event_name": "cpu_time", "unit_price_minor": "0.0015"},
    {"name": "gpu_seconds", "stripe_event_name": "gpu_time", "unit_price_minor": "0.08"},
]).decode()


def stripe_files(ts_s: int) -> dict[str, bytes]:
    json_array = orjson.dumps([
        {"identifier": "26ac9e54-6a13-4b2e-90b0-fedae80bb8f7", "timestamp": ts_s,
         "event_name": "cpu_time", "payload": {"value": 200, "stripe_customer_id": "cus_A"}},
        {"timestamp": ts_s, "event_name": "gpu_time", "extra_key": "test",
         "payload": {"value": 500, "stripe_customer_id": "cus_B"}},
    ], option=orjson.OPT_INDENT_2)
    jsonl = (
        b'{"identifier":"123456","timestamp":%d,"event_name":"cpu_time",'
        b'"payload":{"value":0.25,"stripe_customer_id":"cus_B"}}\n'
        b'{"identifier":"nobody-1","timestamp":%d,"event_name":"cpu_time",'
        b'"payload":{"value":1,"stripe_customer_id":"cus_UNKNOWN"}}\n' % (ts_s, ts_s))
    csv = (b"identifier,timestamp,event_name,payload_stripe_customer_id,payload_value\n"
           b"csv-1,%d,gpu_time,cus_A,999999999999999\n"
           b"csv-2,%d,cpu_time,cus_A,0.000000000000001\n" % (ts_s, ts_s))
    return {"usage/2026/a.json": json_array, "usage/2026/b.jsonl": jsonl,
            "usage/2026/c.csv": csv}


def expected(ts_s: int) -> dict[tuple[str, str], tuple[str, Decimal, int]]:
    ms = ts_s * 1000
    return {
        ("acme", "26ac9e54-6a13-4b2e-90b0-fedae80bb8f7"): ("cpu_seconds", Decimal(200), ms),
        ("beta", "123456"): ("cpu_seconds", Decimal("0.25"), ms),
        ("acme", "csv-1"): ("gpu_seconds", Decimal("999999999999999"), ms),
        ("acme", "csv-2"): ("cpu_seconds", Decimal("0.000000000000001"), ms),
    }


async def prepared_env(kafka_bootstrap: str, tmp_path: Path) -> PipelineEnv:
    env = PipelineEnv(kafka_bootstrap, tmp_path, partitions=2,
                      extra_env={"METERSTREAM_METERS": METERS})
    await env.create_topics()
    await env.produce(
        [(c.encode(), orjson.dumps({"schema": "customer.v1", "customer": c,
                                    "stripe_customer_id": sid}))
         for c, sid in (("acme", "cus_A"), ("beta", "cus_B"))],
        topic=env.settings().topics.customers)
    return env


async def check(env: PipelineEnv, ts_s: int, source_prefix: str) -> None:
    settings = env.settings()
    want = expected(ts_s)
    events = await read_events(env.bootstrap, settings.topics.events, len(want) + 1)
    got = {(e.customer, e.id): (e.meter, e.value, e.timestamp_ms) for e in events
           if e.id != "imp1" and not e.id.startswith("imp1_")}
    derived = [e for e in events if e.id.startswith("imp1_")]
    assert got == want
    # The JSON array's second element has no identifier: a derived id, its own customer.
    assert [(e.customer, e.meter, e.value, e.timestamp_ms) for e in derived] == [
        ("beta", "gpu_seconds", Decimal(500), ts_s * 1000)]
    dlq = await read_topic(env.bootstrap, settings.topics.events_dlq, quiet_s=1,
                           until=lambda m: len(m) >= 1, timeout_s=30)
    assert [(d["reason"], d["stage"], d["source"]["file"], d["source"]["line"])
            for d in dlq] == [("unknown_customer", "import", f"{source_prefix}b.jsonl", 2)]


async def test_stripe_layout_from_a_directory(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = await prepared_env(kafka_bootstrap, tmp_path)
    ts_s = int(time.time()) - 3600
    root = tmp_path / "bucket"
    for key, body in stripe_files(ts_s).items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    summary = run_cli(env, root / "usage", "--layout", "stripe",
                      "--checkpoint", tmp_path / "ck.json")
    assert (summary["imported"], summary["rejected"], summary["files_done"]) == (5, 1, 3)
    await check(env, ts_s, (root / "usage" / "2026").resolve().as_uri() + "/")


async def test_stripe_layout_from_s3(kafka_bootstrap: str, tmp_path: Path,
                                                s3_url: str) -> None:  # noqa: F811
    env = await prepared_env(kafka_bootstrap, tmp_path)
    ts_s = int(time.time()) - 3600
    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket="billing")
    for key, body in stripe_files(ts_s).items():
        s3.put_object(Bucket="billing", Key=key, Body=body)
    importer = Importer(env.settings(), ImportOptions(
        source="s3://billing/usage/", endpoint_url=s3_url, progress=False, layout="stripe",
        checkpoint_path=tmp_path / "ck.json"))
    summary = await importer.run()
    assert (summary.imported, summary.rejected, summary.files_done) == (5, 1, 3)
    await check(env, ts_s, "s3://billing/usage/2026/")
