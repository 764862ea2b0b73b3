"""The docs match the code: the README's settings table is the one generated from the
settings model (issue 13, item 6), and the fake Stripe documents its admin API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.config import Settings
from streams.config.table import BEGIN, END, markdown_table, replace_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme
    assert replace_table(readme) == readme, (
        "README.md's settings table is out of date: run "
        "python -m streams.config.table --write README.md")


def test_every_setting_has_a_row_and_a_meaning() -> None:
    table = markdown_table()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        names = ([f"{section}__{f}".upper() for f in model.model_fields]  # type: ignore[union-attr]
                 if hasattr(model, "model_fields") else [section.upper()])
        for name in names:
            assert f"| `{name}` |" in table, name
    assert "(not described yet)" not in table
    # Limits the issue found missing are stated.
    assert "| `AGGREGATOR__DEDUP_HORIZON_S` | `172800` |" in table and "≥ 3600," in table
    assert "0 is refused" in table


def test_fake_stripe_has_help_and_a_docs_section() -> None:
    out = subprocess.run([sys.executable, "-m", "streams.fakes.stripe", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for endpoint in ("/_fake/ledger", "/_fake/faults", "/_fake/errors", "/_fake/stats",
                     "/_fake/down"):
        assert endpoint in out, endpoint
    docs = (ROOT / "docs" / "fakestripe.md").read_text()
    for endpoint in ("/_fake/ledger", "/_fake/faults", "/_fake/errors", "/_fake/stats",
                     "/_fake/down"):
        assert endpoint in docs, endpoint
    assert "docs/fakestripe.md" in (ROOT / "README.md").read_text()


def test_caught_up_signal() -> None:
    from streams.observability.metrics import CAUGHT_UP, caught_up

    assert CAUGHT_UP._name == "meterstream_caught_up"
    assert not caught_up({}, 100)
    assert not caught_up({0: 5, 1: None}, 100)
    assert not caught_up({0: 5, 1: 101}, 100)
    assert caught_up({0: 5, 1: 100}, 100)
