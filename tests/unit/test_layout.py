"""The README's source layout table names every package under streams/ (and nothing
else), and only the CLI, the errors, the package's own files and packages sit at the top."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STREAMS = ROOT / "streams"
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py", "errors.py"}


def layout_rows() -> list[str]:
    """The first cell of each row of the README's "Source layout" table, split on commas:
    ``core/``, ``sink/engines/``, ``cli.py`` ..."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Source layout (`streams/`)"):]
    table = section[section.index("\n|"):]
    table = table[: table.index("\n\n")]
    names: list[str] = []
    for line in table.strip().splitlines()[2:]:  # past the header and the rule
        first_cell = line.split("|")[1]
        names.extend(re.findall(r"`([^`]+)`", first_cell))
    return names


def packages() -> set[str]:
    return {f"{p.parent.relative_to(STREAMS).as_posix()}/"
            for p in STREAMS.rglob("__init__.py") if p.parent != STREAMS}


def test_the_table_is_read() -> None:
    rows = layout_rows()
    assert "core/" in rows and "sink/engines/" in rows and "cli.py" in rows


def test_every_package_has_a_row_and_every_row_a_package() -> None:
    rows = layout_rows()
    assert len(rows) == len(set(rows)), "a package has two rows"
    listed_packages = {r for r in rows if r.endswith("/")}
    missing = sorted(packages() - listed_packages)
    stale = sorted(listed_packages - packages())
    assert not missing, f"README.md's source layout table lacks {missing}"
    assert not stale, f"README.md's source layout table names packages that do not exist: {stale}"
    listed_modules = {r for r in rows if not r.endswith("/")}
    assert listed_modules == TOP_LEVEL_MODULES


def test_nothing_loose_at_the_top() -> None:
    loose = {p.name for p in STREAMS.iterdir() if p.is_file() and p.suffix == ".py"}
    assert loose == TOP_LEVEL_MODULES, (
        f"modules outside a package: {sorted(loose - TOP_LEVEL_MODULES)}; give each a home")
