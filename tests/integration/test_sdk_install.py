"""A compute worker's install: a fresh virtualenv with ``pip install meterstream[sdk]`` only
imports the producer SDK and sends events to a real broker, and has none of the worker's,
the sink's or the tools' libraries.

pip reaches PyPI (the wheels are cached in .cache/pip of the checkout, so a second run
needs no download).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Any

from streams.testing.readback import read_topic

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 500

# Runs in the fresh virtualenv, from a directory outside the checkout (so that the
# installed package, not the source tree, is imported).
CHILD = """
import asyncio, importlib.util, json, sys
from decimal import Decimal

absent = ["faust", "rocksdict", "stripe", "metronome", "prometheus_client", "aiohttp", "rich",
          "boto3", "pyarrow"]
present = [name for name in absent if importlib.util.find_spec(name) is not None]
assert not present, f"the SDK install brought {present}"

import streams.sdk
from streams import UsageProducer, uuid7_str

assert "/site-packages/" in streams.sdk.__file__, streams.sdk.__file__

async def main(bootstrap, topic, spool, n):
    ids = []
    async with UsageProducer(bootstrap_servers=bootstrap, topic=topic,
                             spool_dir=spool) as producer:
        for i in range(n):
            ids.append(await producer.report(f"c-{i % 7}", "gpu_seconds", Decimal("0.5"),
                                             id=uuid7_str()))
        await producer.flush()
        assert not producer.spooling
    print(json.dumps(ids))

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
"""


def _fresh_sdk_venv(where: Path) -> Path:
    """A new virtualenv with the package and its ``sdk`` extra, built from a copy of what
    the Dockerfile copies (pip builds in the source tree: not in the checkout)."""
    source = where / "src"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    # (Not the checkout's build outputs: the compiled core and the record of its sources.)
    shutil.copytree(ROOT / "streams", source / "streams",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "compiled_from.txt"))
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--cache-dir", str(ROOT / ".cache" / "pip"), f"{source}[sdk]"],
        # (The SDK does not use the core: building it uncompiled keeps this test short.)
        check=True, timeout=900,
        env={**os.environ, "PIP_NO_INPUT": "1", "METERSTREAM_PURE_PYTHON": "1"})
    return python


async def test_the_sdk_extra_alone_sends_events(kafka_bootstrap: str, topic_factory: Any,
                                                tmp_path: Path) -> None:
    topic = await topic_factory(partitions=3)
    python = await asyncio.to_thread(_fresh_sdk_venv, tmp_path / "install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = await asyncio.to_thread(
        subprocess.run,
        [str(python), "-c", CHILD, kafka_bootstrap, topic, str(tmp_path / "spool"),
         str(EVENTS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(set(ids)) == EVENTS
    got = await read_topic(kafka_bootstrap, topic, until=lambda got: len(got) >= EVENTS,
                           quiet_s=1.0, timeout_s=120.0)
    assert sorted(event["id"] for event in got) == sorted(ids)
    assert {event["value"] for event in got} == {"0.5"}
