"""Summaries of py-spy's collapsed stacks ("frame;frame;... count" per line).

py-spy (without ``--idle``) records only samples of threads that are running, so the
sample count over (duration x rate) is the share of one core the process kept busy, and
each bucket below is a share of those busy samples.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

# Inclusive buckets: a sample counts for a bucket when any frame of its stack matches.
BUCKETS: dict[str, tuple[str, ...]] = {
    "batch processor (streams/runtime/processor.py)": ("streams/runtime/processor.py",),
    # (The compiled core's functions are C frames of __native_streams_core.c.)
    "core: validate, dedup, aggregate (streams/core)": ("streams/core/",
                                                       "__native_streams_core"),
    "decode + validate events (streams/core/events.py, orjson)": ("streams/core/events.py",
                                                                  "orjson"),
    "Decimal arithmetic (decimal / money.py)": ("decimal", "money.py"),
    "table writes (faust tables + RocksDB)": ("faust/tables/", "faust/stores/", "rocksdict"),
    "producer send (faust + aiokafka producer)": ("faust/transport/producer",
                                                 "aiokafka/producer", "faust/topics.py"),
    "consumer fetch (aiokafka consumer / fetcher)": ("aiokafka/consumer",),
    "faust stream machinery (faust/streams.py, channels)": ("faust/streams.py",
                                                          "faust/channels.py",
                                                          "faust/transport/consumer.py",
                                                          "faust/transport/conductor.py"),
    "prometheus metrics": ("prometheus_client",),
}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def summarize_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Busy samples, inclusive shares per bucket, and the top functions by self time."""
    total = 0
    bucket_counts: Counter[str] = Counter()
    self_counts: Counter[str] = Counter()
    inclusive_funcs: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = [_parse(f) for f in stack.split(";") if f]
        joined = ";".join(file for _func, file in frames)
        for name, needles in BUCKETS.items():
            if any(needle in joined for needle in needles):
                bucket_counts[name] += n
        if frames:
            func, file = frames[-1]
            self_counts[f"{func} ({_short(file)})"] += n
            if file.endswith("selectors.py"):
                bucket_counts["waiting in epoll (leaf frame: selectors)"] += n
            elif "asyncio/" in file:
                bucket_counts["asyncio loop itself (leaf frame in asyncio)"] += n
        for func, file in {(f, fl) for f, fl in frames}:
            inclusive_funcs[f"{func} ({_short(file)})"] += n
    share = (lambda c: round(c / total, 4)) if total else (lambda c: 0.0)
    return {
        "busy_samples": total,
        "buckets_inclusive": {k: share(v) for k, v in bucket_counts.most_common()},
        "top_self": [{"function": k, "share": share(v)} for k, v in self_counts.most_common(top)],
        "top_inclusive": [{"function": k, "share": share(v)}
                          for k, v in inclusive_funcs.most_common(top)],
    }


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file
