"""The child-process, port and readiness helpers (streams.kafka.local.process) that the
local broker, the demo and the test harness share: real processes, no broker."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from streams.kafka.local.process import (
    ChildProcess,
    free_ports,
    wait_until,
    wait_until_async,
)

SLEEPER = [sys.executable, "-c",
           "import sys, time; print('up', flush=True); time.sleep(60)"]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(1024 <= p < 65536 for p in ports)


def test_stop_sends_sigterm_and_reaps(tmp_path: Path) -> None:
    child = ChildProcess.start(SLEEPER, log_path=tmp_path / "a.log")
    wait_until(lambda: "up" in child.log_text(), timeout_s=30, what="sleeper", child=child)
    assert child.alive()
    assert child.stop(timeout_s=10) == -signal.SIGTERM
    assert not child.alive() and child.returncode == -signal.SIGTERM


def test_stop_falls_back_to_sigkill(tmp_path: Path) -> None:
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('up', flush=True); time.sleep(60)"]
    child = ChildProcess.start(stubborn, log_path=tmp_path / "b.log")
    wait_until(lambda: "up" in child.log_text(), timeout_s=30, what="stubborn", child=child)
    began = time.monotonic()
    assert child.stop(timeout_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 10


def test_freeze_thaw_kill_and_shared_log(tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    first = ChildProcess.start([sys.executable, "-c", "print('first')"], log_path=log)
    assert first.wait(30) and first.returncode == 0
    second = ChildProcess.start(SLEEPER, log_path=log)
    wait_until(lambda: "up" in second.log_text(), timeout_s=30, what="sleeper", child=second)
    assert "first" not in second.log_text() and "first" in log.read_text()
    second.freeze()
    status = Path(f"/proc/{second.pid}/status")
    if status.exists():
        wait_until(lambda: "(stopped)" in status.read_text(), timeout_s=10, what="freeze")
    second.thaw()
    second.kill()
    assert second.returncode == -signal.SIGKILL


def test_wait_until_fails_with_the_log_of_a_child_that_died(tmp_path: Path) -> None:
    child = ChildProcess.start([sys.executable, "-c", "print('boom: bad config'); exit(2)"],
                               log_path=tmp_path / "c.log")
    with pytest.raises(AssertionError, match=r"(?s)the worker exited with 2.*boom: bad"):
        wait_until(lambda: False, timeout_s=30, what="worker", child=child)


def test_wait_until_times_out_naming_what_it_awaited() -> None:
    with pytest.raises(TimeoutError, match=r"the answer was not ready after 0 s\nnone yet"):
        wait_until(lambda: False, timeout_s=0.2, what="answer", detail=lambda: "none yet")


async def test_wait_until_async_returns_the_seconds_it_took() -> None:
    ready_at = time.monotonic() + 0.3
    took = await wait_until_async(lambda: time.monotonic() >= ready_at, timeout_s=10,
                                  what="clock", interval_s=0.05)
    assert 0.2 < took < 5
