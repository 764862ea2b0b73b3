"""``meterstream demo --duration 60`` end to end, as a user runs it (without a TTY), with
each billing engine (``--engine stripe``, the default, and ``--engine metronome``, what
``make demo ENGINE=metronome`` runs).

A fresh process starts its own Kafka (from the local jars), the worker, the fake Stripe
(or the fake Metronome) and the sink, runs the demo load, drains, reconciles and stops
everything. It must exit 0 having shown at least one alert and at least one summary
pushed to the engine, end with the reconcile line reporting 0 differences, and leave no
process behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    return [int(x) for x in out.split()]


@pytest.mark.parametrize("engine", ["stripe", "metronome"])
def test_demo_runs_and_reconciles(tmp_path: Path, engine: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("METERSTREAM_") and k != "STRIPE_API_KEY"}
    env["TMPDIR"] = str(tmp_path)
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "streams", "demo", "--duration", "60",
                             "--engine", engine],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed_s = time.monotonic() - began
    print(output)
    print(f"demo took {elapsed_s:.0f}s")
    assert proc.returncode == 0, output[-3000:]
    assert ("fake Metronome" if engine == "metronome" else "fake Stripe") in output
    alerts = [int(n) for n in re.findall(r"alerts (\d+);", output)]
    assert alerts and max(alerts) >= 1, "no alert was shown"
    pushed = [int(n) for n in re.findall(r"summaries pushed (\d+)", output)]
    assert pushed and max(pushed) >= 1, "no summary was pushed"
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"reconcile: 0 differences \(\d+ customers, \d+ meters\)", last), last
    # Everything the demo started is gone, and its data dir was removed.
    assert _children_of(proc.pid) == []
    assert not list(tmp_path.glob("meterstream-demo-*"))
    assert not list(tmp_path.glob("kafka-local-*"))
