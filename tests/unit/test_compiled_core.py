"""The compiled core (setup.py, mypyc) is current, and computes what its source computes.

Every other test runs on whatever the install built: the compiled core on a machine with
a C compiler. Here one fixed workload (duplicates, late events, invalid records, single
and packed records, alerts, a tick) goes through ``Aggregator.process`` in two processes:
once compiled, once from the Python source (``METERSTREAM_PURE_PYTHON=1``). Every state
write, summary, alert, dead letter and outcome must be the same, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import streams.core

ROOT = Path(__file__).resolve().parents[2]
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 3


def outputs_digest() -> dict[str, Any]:
    """Run the workload through the core (as this process imports it): a digest of every
    output, and how many of each kind there were."""
    from streams.core.aggregate import Aggregator, CoreConfig, SourceRecord
    from streams.core.pricing import MeterRule
    from streams.loadgen.generate import DEFAULT_METERS, GroundTruth, WorkloadSpec, generate
    from streams.testing.memory_state import MemoryState

    config = CoreConfig(
        meters={m: MeterRule(m, agg, price) for m, agg, _max, price in DEFAULT_METERS},
        window_ms=60_000, grace_ms=5_000, default_thresholds=(Decimal(500), Decimal(2_000)))
    agg = Aggregator(config)
    digest = hashlib.sha256()
    seen = {"summaries": 0, "alerts": 0, "dead_letters": 0, "duplicate": 0, "late": 0}
    for pack in (1, 7):
        spec = WorkloadSpec(events=6_000, customers=40, pack=pack, end_ms=END_MS, seed=pack)
        batches: dict[int, list[SourceRecord]] = {p: [] for p in range(PARTITIONS)}
        for offset, (key, value) in enumerate(generate(spec, GroundTruth())):
            batches[zlib.crc32(key) % PARTITIONS].append(
                SourceRecord(offset, END_MS + 60_000, key.decode(), value))
        batches[0].append(SourceRecord(10**6, END_MS + 600_000, None, b"",
                                       tick_ms=END_MS + 600_000))
        for p, records in batches.items():
            state = MemoryState()
            for i in range(0, len(records), 500):
                out = agg.process(p, records[i:i + 500], state, now_ms=END_MS + 700_000)
                state.apply(out.writes)
                dead = [[d.key, d.reason, d.detail, d.offset, d.index, d.original.hex()]
                        for d in out.dead_letters]
                digest.update(orjson.dumps([
                    [[k, None if v is None else v.hex()] for k, v in out.writes],
                    out.summaries, out.alerts, dead, sorted(out.outcomes.items())]))
                seen["summaries"] += len(out.summaries)
                seen["alerts"] += len(out.alerts)
                seen["dead_letters"] += len(out.dead_letters)
                seen["duplicate"] += out.outcomes["duplicate"]
                seen["late"] += out.outcomes["late"]
    return {"compiled": streams.core.compiled(), "digest": digest.hexdigest(), "seen": seen}


def _in_subprocess(*, pure: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "METERSTREAM_PURE_PYTHON"}
    if pure:
        env["METERSTREAM_PURE_PYTHON"] = "1"
    code = ("import json; from tests.unit.test_compiled_core import outputs_digest; "
            "print(json.dumps(outputs_digest()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_core_is_compiled_and_current_where_a_compiler_is() -> None:
    if os.environ.get("METERSTREAM_PURE_PYTHON") == "1":
        assert not streams.core.compiled()
        return
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the install could not compile the core")
    assert streams.core.compiled(), (
        "the core runs from its Python source: it was not compiled, or it changed "
        "since it was (scripts/bootstrap.sh compiles it again)")


def test_compiled_and_source_give_the_same_outputs_byte_for_byte() -> None:
    pure = _in_subprocess(pure=True)
    built = _in_subprocess(pure=False)
    assert pure["compiled"] is False
    assert built["compiled"] is streams.core.compiled()
    assert built["digest"] == pure["digest"]
    # The digest covers every kind of output only if the workload makes each of them.
    assert built["seen"] == pure["seen"]
    assert all(n > 0 for n in pure["seen"].values()), pure["seen"]
