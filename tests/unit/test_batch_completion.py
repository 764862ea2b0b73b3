"""A batch either completes or the worker process ends before Faust can ack it.

Faust acks a take_events batch once the agent moves on, even when the batch raised or
was cancelled; the offsets would then be committed for state never written. These run
``streams.runtime.app._complete`` in a child process, since its failure path ends the
process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import asyncio, logging, sys
    from streams.runtime.app import _complete

    logging.basicConfig(level=logging.INFO)

    done = []

    async def batch(fail: bool) -> None:
        await asyncio.sleep(0.2)
        if fail:
            raise RuntimeError("publish failed")
        done.append(True)

    async def main(mode: str) -> None:
        if mode == "fail":
            await _complete(batch(True))
            print("acked")  # must never happen
        else:  # a shutdown cancels the agent while its batch waits for Kafka
            agent = asyncio.ensure_future(_complete(batch(False)))
            await asyncio.sleep(0.05)
            agent.cancel()
            try:
                await agent
            except asyncio.CancelledError:
                print("cancelled after the batch completed:", done == [True])

    asyncio.run(main(sys.argv[1]))
""")


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=60)


def test_a_failed_batch_ends_the_process_before_any_ack() -> None:
    proc = run("fail")
    assert proc.returncode == 70, proc.stderr
    assert "acked" not in proc.stdout
    assert "a batch did not complete" in proc.stderr and "publish failed" in proc.stderr


def test_a_shutdown_lets_the_batch_in_progress_finish() -> None:
    proc = run("cancel")
    assert proc.returncode == 0, proc.stderr
    assert "cancelled after the batch completed: True" in proc.stdout
