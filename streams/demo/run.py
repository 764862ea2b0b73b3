"""``meterstream demo``: start everything, run a load, show it live, reconcile, stop.

Order of steps:

1. a fresh data dir; the Kafka jars (fetched with Maven on first use); a local broker;
2. ``meterstream topics create``; the fake Stripe (or, with ``STRIPE_API_KEY``, Stripe
   test mode: demo customers are created there, see stripe_setup.py), or with
   ``--engine metronome`` the fake Metronome; a customer record per demo customer on the
   customers topic (its Stripe id, or its Metronome ingest alias);
3. ``meterstream worker``, waited for until ``/ready``; ``meterstream sink``;
4. the load (load.py) for about ``duration - 25`` seconds, while the view shows the
   worker's usage API, the alerts and summaries topics and the sink's metrics;
5. the drain: until the summaries add up to the load's exact totals and the sink has
   finished every summary it read;
6. the reconciliation of every period the load touched; exit 0 only with 0 differences.

The demo's settings are its own (short 60 s windows, its own topics and ports): the
``METERSTREAM_*`` environment does not apply. Every child process runs in its own
session and is stopped (SIGTERM, then SIGKILL) on every exit path, Ctrl-C and SIGTERM
included. The data dir, with each process's log, is removed after a successful run and
kept (its path printed) otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from streams.config import Settings, load_settings
from streams.demo.load import DemoLoad, demo_customers, plan_load
from streams.demo.monitor import Monitor
from streams.demo.view import DemoState, render, status_line
from streams.errors import MeterstreamError, StripeSetupError

__all__ = ["run_demo"]

WINDOW_S, GRACE_S, IDLE_S = 60, 5, 2
DRAIN_RESERVE_S = 25
# The fake Metronome accepts any token; this one is only a placeholder.
DEMO_METRONOME_TOKEN = "demo-metronome-token"  # noqa: S105
_STOP_TIMEOUT_S = 20


class _Children:
    """Child processes, each in its own session, logging to ``logs/<name>.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]


def _free_ports(n: int) -> list[int]:
    from streams.kafka.local.process import free_ports

    return free_ports(n)


def _demo_env(bootstrap: str, data_dir: Path, web_port: int, stripe_base: str | None,
              stripe_key: str | None, metronome_base: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update({
        "METERSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "METERSTREAM_KAFKA__CLIENT_ID": "meterstream-demo",
        "METERSTREAM_TOPICS__PARTITIONS": "4",
        "METERSTREAM_AGGREGATOR__WINDOW_S": str(WINDOW_S),
        "METERSTREAM_AGGREGATOR__GRACE_S": str(GRACE_S),
        "METERSTREAM_AGGREGATOR__IDLE_CLOSE_AFTER_S": str(IDLE_S),
        "METERSTREAM_WORKER__APP_ID": "meterstream-demo",
        "METERSTREAM_WORKER__STATE_DIR": str(data_dir / "worker-state"),
        "METERSTREAM_WORKER__WEB_PORT": str(web_port),
        "METERSTREAM_STRIPE__MODE": "v1",
    })
    if metronome_base is not None:
        del env["METERSTREAM_STRIPE__MODE"]  # the Stripe section stays at its dry-run default
        env.update({
            "METERSTREAM_SINK__ENGINE": "metronome",
            "METERSTREAM_METRONOME__API_BASE": metronome_base,
            "METERSTREAM_METRONOME__API_TOKEN": DEMO_METRONOME_TOKEN,
        })
        return env
    if stripe_key is not None:
        env["METERSTREAM_STRIPE__API_KEY"] = stripe_key
    else:
        assert stripe_base is not None
        env["METERSTREAM_STRIPE__API_BASE"] = stripe_base
        # The fake has no sandbox limit; the default 25/s would only slow the drain.
        env["METERSTREAM_STRIPE__RATE_LIMIT_PER_S"] = "500"
    return env


@contextlib.contextmanager
def _env_applied(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _settings(env: dict[str, str]) -> Settings:
    with _env_applied(env):
        return load_settings()


class _Output:
    """Step messages: a spinner on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, live: bool) -> None:
        self.console = console
        self.live = live

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        began = time.monotonic()
        if self.live:
            with self.console.status(what + " ..."):
                yield
        else:
            print(f"demo: {what} ...", flush=True)
            yield
        self.say(f"{what}: done in {time.monotonic() - began:.1f}s")

    def say(self, line: str) -> None:
        if self.live:
            self.console.print(line, markup=False, highlight=False)
        else:
            print(f"demo: {line}", flush=True)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The ``meterstream demo`` command; see the module docstring."""
    del settings  # the demo runs on its own settings (see the module docstring)
    # Client libraries log every request at INFO; the demo reports through its view.
    logging.getLogger().setLevel(logging.WARNING)
    console = Console()
    if args.duration < 45:
        print("meterstream demo: --duration must be >= 45 (seconds)", file=sys.stderr)
        return 2
    if args.events_per_s <= 0 or not 2 <= args.customers <= 10_000:
        print("meterstream demo: --events-per-s must be > 0 and --customers in 2..10000",
              file=sys.stderr)
        return 2
    out = _Output(console, live=console.is_terminal and not args.plain)
    data_dir = Path(tempfile.mkdtemp(prefix="meterstream-demo-"))
    (data_dir / "logs").mkdir()
    children = _Children(data_dir / "logs")
    kafka: Any = None
    code = 1

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        from streams.kafka.local import KafkaLocal, fetch, pinned_version

        version = pinned_version()
        kafka = KafkaLocal(data_dir / "kafka", heap_mb=384)
        if not (kafka.home / "lib" / version / f"kafka_2.13-{version}.jar").is_file():
            with out.step(f"fetching Kafka {version} jars with Maven (first run only)"):
                fetch(version)
        with out.step(f"starting Kafka {version} (KRaft, {data_dir / 'kafka'})"):
            kafka.start(timeout_s=120)
        code = asyncio.run(_run(args, out, data_dir, kafka.bootstrap_servers, children))
    except KeyboardInterrupt:
        out.say("interrupted: stopping everything")
        code = 130
    except (RuntimeError, TimeoutError, OSError, MeterstreamError) as exc:
        out.say(f"demo failed: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        children.stop_all()
        if kafka is not None:
            kafka.stop()
        if code == 0:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            out.say(f"logs kept in {data_dir / 'logs'}")
    return code


async def _wait_ready(url: str, children: _Children, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            if children.dead():
                raise RuntimeError(f"{', '.join(children.dead())} exited during start-up")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")
            await asyncio.sleep(0.5)


async def _produce_customers(settings: Settings, ids: dict[str, str],
                             id_field: str = "stripe_customer_id") -> None:
    import orjson

    from streams.loadgen.cli import make_producer

    producer = make_producer(settings)
    await producer.start()
    try:
        sends = [await producer.send(settings.topics.customers, key=c.encode(), value=orjson.dumps(
            {"schema": "customer.v1", "customer": c, id_field: sid}))
            for c, sid in ids.items()]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _run(args: argparse.Namespace, out: _Output, data_dir: Path, bootstrap: str,
               children: _Children) -> int:
    python = sys.executable
    web_port, stripe_port, metrics_port = _free_ports(3)
    metronome = getattr(args, "engine", "stripe") == "metronome"
    stripe_key = None if metronome else (os.environ.get("STRIPE_API_KEY") or None)
    stripe_base = None if stripe_key else f"http://127.0.0.1:{stripe_port}"
    env = _demo_env(bootstrap, data_dir, web_port, stripe_base, stripe_key,
                    stripe_base if metronome else None)
    settings = _settings(env)
    customers = demo_customers(args.customers)
    state = DemoState(duration_s=args.duration)

    with out.step("creating topics"):
        done = await asyncio.to_thread(subprocess.run, [python, "-m", "streams", "topics",
                                                        "create"], env=env,
                                       capture_output=True, text=True, check=False)
        if done.returncode != 0:
            out.say(f"topics create failed:\n{done.stdout}{done.stderr}")
            return 1
    id_field = "stripe_customer_id"
    if metronome:
        children.start("fakemetronome", [python, "-m", "streams.fakes.metronome",
                                         "--port", str(stripe_port)], env)
        ids = {c: f"acct_demo_{c.removeprefix('demo-')}" for c in customers}
        id_field = "metronome_ingest_alias"
        state.mode = "fake Metronome"
        out.say(f"Metronome: the fake Metronome on {stripe_base} (engine metronome: usage "
                "events through metronome-sdk)")
    elif stripe_key is None:
        children.start("fakestripe", [python, "-m", "streams.fakes.stripe", "--port",
                                      str(stripe_port)], env)
        ids = {c: f"cus_demo_{c.removeprefix('demo-')}" for c in customers}
        out.say(f"Stripe: the fake Stripe on {stripe_base} (set STRIPE_API_KEY to use "
                "Stripe test mode)")
    else:
        from streams.demo.stripe_setup import create_demo_customers

        state.mode = "Stripe TEST MODE"
        out.say("Stripe: using Stripe TEST MODE (STRIPE_API_KEY is set); the demo creates "
                f"{len(customers)} new test-mode customers and needs sum meters named "
                + ", ".join(m.stripe_event_name for m in settings.meters))
        try:
            with out.step("creating demo customers in Stripe test mode"):
                ids = await create_demo_customers(
                    stripe_key, customers, [m.stripe_event_name for m in settings.meters])
        except StripeSetupError as exc:
            out.say(str(exc))
            return 2
    await _produce_customers(settings, ids, id_field)
    with out.step("starting the worker"):
        children.start("worker", [python, "-m", "streams", "worker"], env)
        await _wait_ready(f"http://127.0.0.1:{web_port}/ready", children, 180)
    children.start("sink", [python, "-m", "streams", "sink", "--metrics-port",
                            str(metrics_port)], env)

    load = DemoLoad(settings, customers, args.events_per_s)
    plan = plan_load(int(time.time() * 1000), args.duration - DRAIN_RESERVE_S,
                     WINDOW_S * 1000)
    out.say(f"load: {args.events_per_s:g} events/s from {len(customers)} customers for "
            f"{(plan.stop_ms - plan.start_ms) / 1000:.0f}s (event time ends on the minute, "
            "so the last window closes right after)")
    monitor = Monitor(settings, state, customers,
                      usage_url=f"http://127.0.0.1:{web_port}",
                      metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
    state.started = time.monotonic()
    state.phase = "load"
    async with monitor.running(), _view(out, state):
        from streams.loadgen.cli import make_producer

        producer = make_producer(settings)
        await producer.start()
        try:
            def tick() -> None:
                state.events_sent = load.sent
                state.sample_rate()
                if children.dead():
                    raise RuntimeError(f"{', '.join(children.dead())} exited")

            await load.run(producer, plan, on_tick=tick)
            tick()
        finally:
            await producer.stop()
        state.phase = "closing windows, draining the sink"
        drained = await monitor.wait_drained(dict(load.totals), timeout_s=max(
            60.0, args.duration - state.elapsed_s + 45))
        state.phase = "reconciling" if drained else "drain timed out; reconciling"
    out.say(status_line(state))
    if not drained:
        out.say("the drain did not finish in time: summaries or sink are behind")
    children.stop("sink")
    return await _reconcile(settings, sorted(load.periods), load, out, stripe_key is not None)


@contextlib.asynccontextmanager
async def _view(out: _Output, state: DemoState) -> Any:
    """The live view on a terminal; a status line every 5 s otherwise."""
    if out.live:
        from rich.live import Live

        with Live(render(state), console=out.console, refresh_per_second=4,
                  get_renderable=lambda: render(state)):
            yield
        return

    async def lines() -> None:
        while True:
            await asyncio.sleep(5)
            out.say(status_line(state))

    task = asyncio.create_task(lines())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reconcile(settings: Settings, periods: list[str], load: DemoLoad, out: _Output,
                     real_stripe: bool) -> int:
    from streams.sink.reconcile import reconcile

    # Stripe aggregates meter events asynchronously; the fake answers at once.
    deadline = time.monotonic() + (180 if real_stripe else 0)
    while True:
        buffer = io.StringIO()
        differences = 0
        for period in periods:
            result = await reconcile(settings, period, out=buffer)
            differences += len(result.differences)
        if differences == 0 or time.monotonic() >= deadline:
            break
        out.say(f"reconcile: {differences} differences; Stripe may still be aggregating, "
                "retrying in 15s")
        await asyncio.sleep(15)
    if differences:
        out.say(buffer.getvalue().rstrip())
    customers = len({c for c, _ in load.totals})
    meters = len({m for _, m in load.totals})
    print(f"reconcile: {differences} differences ({customers} customers, {meters} meters)",
          flush=True)
    return 0 if differences == 0 else 1
