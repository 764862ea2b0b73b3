"""Child processes, free ports and readiness: what a local broker, the demo and the test
harness all need, in one place and with the standard library only.

- :func:`free_ports`: n distinct loopback ports that were free a moment ago.
- :class:`ChildProcess`: a process started with an environment and a log file, stopped
  with SIGTERM and then SIGKILL, killed, frozen (SIGSTOP) and thawed (SIGCONT); every way
  out waits for it, so no zombie is left, and one still running when its owner is
  collected or the interpreter exits is killed (unless started ``detach=True``).
- :func:`wait_until` and :func:`wait_until_async`: poll a predicate (or :func:`http_ok`
  on a ``/ready`` URL) until it holds, failing with what was awaited, for how long, and
  the log of the child that died first.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

__all__ = ["LOOPBACK", "ChildProcess", "free_ports", "http_ok", "spawn",
           "wait_until", "wait_until_async"]

LOOPBACK = "127.0.0.1"
_LOG_TAIL_CHARS = 3000


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports that were free a moment ago."""
    # All sockets stay open until every port is chosen, so the n ports are distinct.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None,
          new_session: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` appending its output to ``log_path``; the process, and where its
    lines begin in the log. Wrap it in a :class:`ChildProcess` (or a subclass)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_start = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, start_new_session=new_session)
    return proc, log_start


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer: a child must not outlive its owner, nor stay a zombie."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class ChildProcess:
    """One child process writing stdout and stderr to ``log_path`` (appended to).

    ``log_start`` is where this process's lines begin in the log, so that processes can
    share one log file (the sinks of a chaos run do).
    """

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, log_start: int = 0,
                 *, detach: bool = False) -> None:
        self.proc = proc
        self.log_path = log_path
        self.log_start = log_start
        self._finalizer = None if detach else weakref.finalize(self, _reap, proc)

    @classmethod
    def start(cls, argv: Sequence[str], *, log_path: Path,
              env: Mapping[str, str] | None = None, cwd: Path | None = None,
              new_session: bool = False, detach: bool = False) -> Self:
        """Start ``argv`` with ``env`` (the whole environment; None inherits ours).

        ``new_session``: the child gets its own session, so a Ctrl-C at the terminal
        reaches only this process, which passes it on. ``detach``: the child may outlive
        this object and this interpreter (a broker started from the command line).
        """
        proc, log_start = spawn(argv, log_path=log_path, env=env, cwd=cwd,
                                new_session=new_session)
        return cls(proc, log_path, log_start, detach=detach)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        """What this process wrote to its log (from ``log_start``)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    def wait(self, timeout_s: float) -> bool:
        """True once the process has exited (and is reaped), False after ``timeout_s``."""
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait up to ``timeout_s`` for a clean stop, then SIGKILL; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not self.wait(timeout_s):
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._done()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, nothing finished; returns once it is reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._done()

    def freeze(self) -> None:
        """SIGSTOP: the process stops where it is (a GC pause, a VM migration, a stalled
        disk), heartbeats included."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the frozen process goes on from where it stopped."""
        self.proc.send_signal(signal.SIGCONT)

    def _done(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def exited_error(self, what: str) -> AssertionError:
        """The failure to raise when ``what`` (this process) died on its own: an
        AssertionError, so that a test waiting on a child fails (rather than errors) with
        the child's log in its message."""
        tail = self.log_tail()
        hint = (" after a SIGTERM this test did not send (another process on the machine?)"
                if "Signal received: 15" in tail else "")
        return AssertionError(f"the {what} exited with {self.proc.returncode}{hint}; "
                                f"its log ends:\n{tail}")


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET ``url`` answers 200 (a local readiness URL such as ``/ready``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (local URL)
            return bool(resp.status == 200)
    except OSError:
        return False


def _timed_out(what: str, timeout_s: float, detail: Callable[[], str] | None) -> TimeoutError:
    more = f"\n{detail()}" if detail is not None else ""
    return TimeoutError(f"the {what} was not ready after {timeout_s:.0f} s{more}")


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str,
               child: ChildProcess | None = None, interval_s: float = 0.1,
               detail: Callable[[], str] | None = None) -> float:
    """Poll ``ready()`` until it holds; return the seconds it took.

    Raises AssertionError (with the child's log) as soon as ``child`` exits,
    and TimeoutError naming ``what`` (plus ``detail()``, if given) after ``timeout_s``.
    """
    began = time.monotonic()
    while True:
        if child is not None and not child.alive():
            raise child.exited_error(what)
        if ready():
            return time.monotonic() - began
        if time.monotonic() - began >= timeout_s:
            raise _timed_out(what, timeout_s, detail)
        time.sleep(interval_s)


async def wait_until_async(ready: Callable[[], bool], *, timeout_s: float, what: str,
                           child: ChildProcess | None = None, interval_s: float = 0.3,
                           detail: Callable[[], str] | None = None) -> float:
    """:func:`wait_until` for a running event loop: ``ready()`` (which may block, as
    :func:`http_ok` does) runs in a thread, so the loop keeps serving (a fake Stripe on it
    must keep answering)."""
    began = time.monotonic()
    while True:
        if child is not None and not child.alive():
            raise child.exited_error(what)
        if await asyncio.to_thread(ready):
            return time.monotonic() - began
        if time.monotonic() - began >= timeout_s:
            raise _timed_out(what, timeout_s, detail)
        await asyncio.sleep(interval_s)
