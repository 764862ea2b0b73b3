"""The demo ships in the package; the test harness does not belong in its imports.

Walks the source (no import is executed): from every module of streams/demo, each
``streams.*`` import (at any depth of the module, function bodies included) is followed
to its module and, because importing a module first imports its packages, to every
parent package's ``__init__.py``. The closure must reach the local broker
(streams.kafka.local) and must not reach streams.testing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` under ROOT, or None (not ours, or a name
    imported from a module rather than a submodule)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``streams.*`` module ``path`` imports, with ``from X import y`` counted as
    X and, when y is a submodule, X.y; relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "streams"}


def closure(start: list[Path]) -> set[str]:
    seen: set[str] = set()
    todo = [module_name(p) for p in start]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for n in range(1, len(parts) + 1):  # the packages first, then the module
            prefix = ".".join(parts[:n])
            if prefix in seen:
                continue
            path = module_file(prefix)
            if path is None:
                continue
            seen.add(prefix)
            todo.extend(imported_modules(path))
    return seen


def test_the_demo_does_not_import_the_test_harness() -> None:
    demo = sorted((ROOT / "streams" / "demo").glob("*.py"))
    assert demo, "streams/demo has no modules"
    reached = closure(demo)
    assert "streams.kafka.local.broker" in reached, sorted(reached)
    harness = sorted(m for m in reached if m == "streams.testing"
                     or m.startswith("streams.testing."))
    assert harness == [], f"the demo imports the test harness: {harness}"


def test_the_walk_sees_a_harness_import() -> None:
    """The walk itself: a module that imports the harness is caught."""
    reached = closure([ROOT / "streams" / "testing" / "chaos.py"])
    assert "streams.testing.pipeline" in reached
