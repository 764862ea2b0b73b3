"""Shared pieces of the benchmark harness: broker, workloads, process probes, timing.

Everything here runs on the machine that also hosts the broker, so every figure the
harness reports is paired with ratios taken in the same run (see benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.local.process import ChildProcess, http_ok
from streams.loadgen.generate import GroundTruth, WorkloadSpec, generate

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
WINDOW_S = 60
GRACE_S = 30  # covers the packed layout's linger (20 s) plus jitter
CLOSER_PREFIX = "zz-closer-"


# -- numbers ---------------------------------------------------------------------------------

def milli(value: str) -> int:
    """A plain decimal string with at most 3 decimals as integer thousandths, exactly.

    The naive Faust and Quix contenders sum these integers: exact, and as cheap as a
    tutorial-style ``+=`` gets (floats would not add up to the ground truth).
    """
    whole, _, frac = value.partition(".")
    if len(frac) > 3 or "e" in value or "E" in value:
        raise ValueError(f"not a plain decimal with <= 3 decimals: {value!r}")
    return int(whole or "0") * 1000 + int((frac + "000")[:3])


def truth_milli(truth: GroundTruth) -> dict[str, int]:
    """Ground-truth totals as ``"customer|meter" -> thousandths``."""
    return {f"{c}|{m}": int(v * 1000) for (c, m), v in truth.totals.items()}


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank method, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


# -- workloads -------------------------------------------------------------------------------

@dataclass
class DrainWorkload:
    """A clean pre-loaded workload plus one closer record per partition.

    Clean means no duplicates, late or invalid events, so that every contender (the naive
    ones neither dedup nor validate) must arrive at the same totals. meterstream still
    runs its validation and dedup checks on every event.

    Packed layout: the single-event stream (in event-time order) is packed per customer
    the way a producer with linger does it: a customer's pending array is sent when it
    holds ``pack`` events or when its first event is ``linger_ms`` of event time older
    than the current one. Records are therefore at most ``linger_ms`` (+1 s jitter) late
    in event time, within the ``GRACE_S`` both windowed contenders use; hot customers
    fill whole arrays, rare ones send short ones (``records`` says how many).

    The closer records carry an event time past every data window plus grace, so a
    stream-time window (meterstream, Quix) closes every data window at the end of the log.
    """

    events: int
    customers: int
    pack: int
    seed: int = 7
    zipf_s: float = 1.1
    span_s: int = 600
    linger_ms: int = 20_000
    truth: GroundTruth = field(default_factory=GroundTruth)
    end_ms: int = 0
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    closers: list[tuple[int, bytes, bytes]] = field(default_factory=list)

    def build(self) -> None:
        # Event time ends 4 minutes ago, so the closers (150 s later) stay within the
        # worker's 5-minute in-future bound measured against their produce time.
        self.end_ms = int(time.time() * 1000) - 240_000
        spec = WorkloadSpec(
            events=self.events, customers=self.customers, zipf_s=self.zipf_s,
            duplicate_rate=0.0, late_rate=0.0, invalid_rate=0.0, pack=1,
            span_ms=self.span_s * 1000, end_ms=self.end_ms, grace_ms=GRACE_S * 1000,
            seed=self.seed,
        )
        self.truth = GroundTruth()
        singles = list(generate(spec, self.truth))
        self.records = singles if self.pack <= 1 else self._pack(singles)
        self.truth.records = len(self.records)
        closer_ms = self.end_ms + 150_000
        self.closers = []
        for p in range(PARTITIONS):
            key = f"{CLOSER_PREFIX}{p}"
            body = {"id": f"closer-{p}", "customer": key, "meter": "cpu_seconds",
                    "value": "0", "timestamp": closer_ms}
            self.closers.append((p, key.encode(), orjson.dumps(body)))

    def _pack(self, singles: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        pending: dict[bytes, list[dict[str, Any]]] = {}
        for key, value in singles:
            ev = orjson.loads(value)
            ts = int(ev["timestamp"])
            for k in [k for k, evs in pending.items()
                      if ts - int(evs[0]["timestamp"]) >= self.linger_ms]:
                out.append((k, orjson.dumps(pending.pop(k))))
            batch = pending.setdefault(key, [])
            batch.append(ev)
            if len(batch) >= self.pack:
                out.append((key, orjson.dumps(pending.pop(key))))
        out.extend((k, orjson.dumps(evs)) for k, evs in pending.items())
        return out

    @property
    def total_events(self) -> int:
        """Events a contender consumes: the workload's plus the closers."""
        return self.truth.events_sent + len(self.closers)

    def truth_doc(self) -> dict[str, Any]:
        return {"totals_milli": truth_milli(self.truth), "events": self.truth.events_sent,
                "closers": len(self.closers), "total_events": self.total_events}


async def produce_records(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                          closers: list[tuple[int, bytes, bytes]] | None = None) -> float:
    """Produce records (then closers to explicit partitions); returns the seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=20,
        max_batch_size=512 * 1024, compression_type="lz4",
    )
    await producer.start()
    began = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in records:
            pending.append(await producer.send(topic, key=key, value=value))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        for partition, key, value in closers or []:
            await (await producer.send(topic, key=key, value=value, partition=partition))
    finally:
        await producer.stop()
    return time.monotonic() - began


# -- processes -------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in bytes; empty if it is gone."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0]) * 1024
    return out


def dir_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read().decode()
    except Exception as exc:  # not up yet, or answering an error status
        code = getattr(exc, "code", 0)
        return (int(code) if isinstance(code, int) else 0), ""


_EVENTS_RE = re.compile(r"^meterstream_events_total\{[^}]*\} (\S+)", re.M)


def worker_events(port: int) -> float:
    """Events the worker has processed (every outcome), from its /metrics."""
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(float(v) for v in _EVENTS_RE.findall(text))


def worker_ready(port: int) -> bool:
    """The worker's /ready answers 200 (its partitions are assigned and restored)."""
    return http_ok(f"http://127.0.0.1:{port}/ready")


async def wait_until(pred: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(every_s)
    return pred()


def app_command(module: str, args: dict[str, object]) -> list[str]:
    cmd = [sys.executable, "-m", module]
    for k, v in args.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> ChildProcess:
    """``cmd`` in the repository root, with ``env`` over ours; stop it with ``.stop()``
    (SIGTERM, wait, then SIGKILL: only the process this harness started)."""
    return ChildProcess.start(cmd, log_path=log_path, env={**os.environ, **(env or {})},
                              cwd=ROOT)


# -- machine ---------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    def versions() -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in ("faust-streaming", "quixstreams", "aiokafka", "confluent-kafka",
                     "rocksdict", "orjson"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = "absent"
        return out

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": versions(),
    }


def write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=_default) + "\n")


def _default(o: object) -> object:
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
