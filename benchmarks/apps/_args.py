"""The command line every contender app shares, and its result file."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STARTED_S = time.time()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--truth", type=Path, required=True, help="truth JSON from the harness")
    p.add_argument("--result", type=Path, required=True)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--window-ms", type=int, default=60_000)
    p.add_argument("--grace-ms", type=int, default=5_000)
    return p.parse_args()


def load_truth(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_result(path: Path, *, first_event_s: float | None, done_s: float | None,
                 events: int, totals_equal: bool | None, **extra: Any) -> None:
    doc = {"started_s": STARTED_S, "first_event_s": first_event_s, "done_s": done_s,
           "events": events, "totals_equal": totals_equal, **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
