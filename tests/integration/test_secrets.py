"""Secrets never appear in logs, errors, dead letters or metrics, even when things fail.

The whole pipeline runs over SASL_SSL (the ``kafka_sasl_ssl`` broker) at log level DEBUG,
with a distinctive Stripe key, SASL password and API token:

- a worker and a sink (``python -m streams sink``) against the fake Stripe, which accepts
  only another key, so every Stripe call of the sink fails with 401: the sink holds its
  summaries (none is dead-lettered), logs Stripe's (masked) error at ERROR and sets
  ``meterstream_sink_stripe_auth_failing``;
- the worker's /metrics and usage API refuse requests without the token (401) and answer
  with it; the sink's /metrics answers;
- ``meterstream worker`` with a bad setting exits 2; ``topics create`` and the sink with a
  wrong SASL password fail.

Then every log line, CLI output, HTTP body, dead letter and metrics page is searched for
each secret (and for the random tail of each, so a partial echo is caught too).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from streams.kafka.local import KafkaLocal
from streams.kafka.local.process import ChildProcess, free_ports, wait_until
from streams.sdk.producer import UsageProducer
from streams.testing.pipeline import PipelineEnv
from streams.testing.readback import read_topic

CUSTOMERS = ("c-secrets-1", "c-secrets-2")


def _scan(texts: dict[str, str], secret_values: list[str]) -> list[str]:
    found = []
    for where, text in texts.items():
        for secret in secret_values:
            if secret in text or secret[-12:] in text:
                found.append(f"{where}: a secret ending in ...{secret[-2:]}")
    return found


async def _get(session: aiohttp.ClientSession, url: str,
               headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with session.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.text()


def _start_fakestripe(tmp_path: Path, api_key: str) -> tuple[ChildProcess, str]:
    """The fake Stripe on a port of its choosing, which it prints once it listens."""
    proc = ChildProcess.start(
        [sys.executable, "-m", "streams.fakes.stripe", "--port", "0", "--api-key", api_key],
        log_path=tmp_path / "fakestripe.log", cwd=tmp_path)
    listening = "fakestripe listening on "
    wait_until(lambda: listening in proc.log_text(), timeout_s=60, what="fake Stripe",
               child=proc)
    line = next(x for x in proc.log_text().splitlines() if x.startswith(listening))
    return proc, line.rsplit(" ", 1)[1].strip()


def _start_sink(env: PipelineEnv, log: Path, metrics_port: int) -> ChildProcess:
    return ChildProcess.start(
        [sys.executable, "-m", "streams", "sink", "--metrics-port", str(metrics_port)],
        log_path=log, env={**os.environ, **env.env}, cwd=env.workdir)


def _run(env: dict[str, str], *args: str, cwd: Path,
         timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout_s, cwd=cwd,
                          check=False)


async def test_no_secret_in_logs_errors_dead_letters_or_metrics(
    kafka_sasl_ssl: KafkaLocal, tmp_path: Path
) -> None:
    broker = kafka_sasl_ssl
    stripe_key = "sk_test_" + secrets.token_hex(20)
    fake_key = "sk_test_" + secrets.token_hex(20)  # the only key the fake Stripe accepts
    api_token = "tok_" + secrets.token_hex(20)
    wrong_sasl = "wrong-" + secrets.token_hex(16)
    secret_values = [stripe_key, fake_key, api_token, broker.sasl_password, wrong_sasl]

    fake, stripe_url = _start_fakestripe(tmp_path, fake_key)
    web_port, sink_metrics_port = free_ports(2)
    env = PipelineEnv(broker.sasl_bootstrap_servers, tmp_path, partitions=2, extra_env={
        "METERSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "METERSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "METERSTREAM_KAFKA__SASL_USERNAME": broker.sasl_username,
        "METERSTREAM_KAFKA__SASL_PASSWORD": broker.sasl_password,
        "METERSTREAM_KAFKA__SSL_CAFILE": str(broker.ca_file),
        "METERSTREAM_STRIPE__MODE": "v1",
        "METERSTREAM_STRIPE__API_KEY": stripe_key,
        "METERSTREAM_STRIPE__API_BASE": stripe_url,
        "METERSTREAM_STRIPE__RATE_LIMIT_PER_S": "200",
        "METERSTREAM_WORKER__API_TOKEN": api_token,
        "METERSTREAM_WORKER__LOG_LEVEL": "DEBUG",
    })
    settings = env.settings()
    texts: dict[str, str] = {}
    sink_log = tmp_path / "sink.log"
    sink: ChildProcess | None = None
    worker = None
    try:
        created = _run(env.env, "topics", "create", cwd=tmp_path)
        texts["topics create"] = created.stdout + created.stderr
        assert created.returncode == 0, created.stderr[-2000:]
        # The sink holds summaries of customers without a Stripe customer id.
        await env.produce(
            [(c.encode(), (f'{{"schema": "customer.v1", "customer": "{c}", '
                           f'"stripe_customer_id": "cus_{c[-1]}"}}').encode())
             for c in CUSTOMERS], topic=settings.topics.customers)

        worker = env.start_worker(web_port=web_port)
        sink = _start_sink(env, sink_log, sink_metrics_port)

        window_start = (int(time.time()) // 60 - 3) * 60_000
        async with UsageProducer.from_settings(settings, spool_dir=tmp_path / "spool") as p:
            for i in range(200):
                await p.report(CUSTOMERS[i % 2], ("cpu_seconds", "gpu_seconds")[i // 2 % 2],
                               i + 1, timestamp=window_start + i * 100)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # Every summary (2 customers x 2 meters) is refused with 401 and held.
            sink_metrics = f"http://127.0.0.1:{sink_metrics_port}/metrics"
            deadline = time.monotonic() + 120
            while True:
                try:
                    page = (await _get(session, sink_metrics))[1]
                except aiohttp.ClientError:
                    page = ""
                if ("meterstream_sink_stripe_auth_failing 1.0" in page
                        and "meterstream_sink_pending_summaries 4.0" in page):
                    break
                if time.monotonic() > deadline:
                    lines = worker.log_path.read_text(errors="replace").splitlines()
                    shown = "\n".join(line for line in lines if " DEBUG " not in line)[-4000:]
                    raise AssertionError(f"the sink does not hold 4 summaries for the refused "
                                         f"key; its metrics:\n{page}\nworker log:\n{shown}")
                await asyncio.sleep(0.5)
            texts["sink metrics, key refused"] = page
            dead = await read_topic(env.bootstrap, settings.topics.summaries_dlq,
                                    kafka=settings.kafka, quiet_s=2, timeout_s=30)
            assert dead == [], "a refused key must not dead-letter summaries"

            await worker.wait_ready(90)
            base = f"http://127.0.0.1:{web_port}"
            auth = {"Authorization": f"Bearer {api_token}"}
            usage = f"{base}/customers/{CUSTOMERS[0]}/usage"
            for name, url, headers, want in [
                ("metrics without token", f"{base}/metrics", None, 401),
                ("metrics with a wrong token", f"{base}/metrics",
                 {"Authorization": f"Bearer {api_token[:-1]}"}, 401),
                ("metrics as basic auth", f"{base}/metrics",
                 {"Authorization": f"Basic {api_token}"}, 401),
                ("usage without token", usage, None, 401),
                ("usage with the token", usage, auth, 200),
                ("metrics with the token", f"{base}/metrics", auth, 200),
                ("sink metrics", f"http://127.0.0.1:{sink_metrics_port}/metrics", None, 200),
                # Faust's table views would bypass the token: they are off.
                ("faust table list", f"{base}/table/", None, 404),
                ("faust table key", f"{base}/table/state/P|0/", None, 404),
            ]:
                status, body = await _get(session, url, headers)
                assert status == want, (name, status, body[:300])
                texts[name] = body
            assert "meterstream_events_total" in texts["metrics with the token"]
            assert "meterstream_sink" in texts["sink metrics"]

        # A bad setting: exit 2, a message naming it, with secrets all around.
        bad = _run({**env.env, "METERSTREAM_STRIPE__API_KEY": "pk_live_" + stripe_key[8:],
                    "METERSTREAM_WORKER__WEB_PORT": "0"}, "worker", cwd=tmp_path)
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert "METERSTREAM_STRIPE" in bad.stderr and "METERSTREAM_WORKER__WEB_PORT" in bad.stderr
        texts["bad config"] = bad.stdout + bad.stderr

        # A wrong SASL password, for the admin client and for the sink.
        wrong_env = {**env.env, "METERSTREAM_KAFKA__SASL_PASSWORD": wrong_sasl}
        refused = _run(wrong_env, "topics", "create", cwd=tmp_path)
        assert refused.returncode == 1 and "Authentication failed" in refused.stderr
        texts["topics create, wrong password"] = refused.stdout + refused.stderr
        wrong_sink = _run(wrong_env, "sink", "--metrics-port", "0", cwd=tmp_path, timeout_s=90)
        assert wrong_sink.returncode != 0
        assert "Authentication failed" in wrong_sink.stdout + wrong_sink.stderr
        texts["sink, wrong password"] = wrong_sink.stdout + wrong_sink.stderr
    finally:
        if sink is not None:
            sink.stop(timeout_s=60)
        if worker is not None:
            worker.stop(timeout_s=30)
        fake.stop(timeout_s=30)

    assert sink is not None and sink.returncode == 0, sink_log.read_text()[-3000:]
    assert worker is not None and worker.proc.returncode == 0
    texts["worker log"] = worker.log_path.read_text(errors="replace")
    texts["sink log"] = sink_log.read_text(errors="replace")
    texts["fake stripe log"] = fake.log_text()
    # The logs are real: DEBUG level, with the 401s in them.
    assert "DEBUG" in texts["worker log"] and "DEBUG" in texts["sink log"]
    assert "refused the API key (HTTP 401)" in texts["sink log"]
    assert _scan(texts, secret_values) == []
