"""The dependency direction, checked on the source: core is pure, only runtime/ uses faust."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_imports_only_stdlib_orjson_and_msgspec() -> None:
    allowed = set(sys.stdlib_module_names) | {"orjson", "msgspec", "streams"}
    for path in sorted((STREAMS / "core").glob("*.py")):
        bad = imports_of(path) - allowed
        assert not bad, f"{path.name} imports {sorted(bad)}: core must stay pure"


def test_core_does_not_import_outer_packages() -> None:
    for path in sorted((STREAMS / "core").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "streams."):
                assert node.module.startswith("streams.core"), (
                    f"{path.name} imports {node.module}: core depends on nothing outside it")


def test_only_runtime_imports_faust() -> None:
    for path in sorted(STREAMS.rglob("*.py")):
        rel = path.relative_to(STREAMS)
        if rel.parts[0] == "runtime":
            continue
        assert not imports_of(path) & {"faust", "mode"}, f"{rel} imports faust"


def test_no_float_arithmetic_on_money_in_core() -> None:
    """A float() call or a float literal in the core would be a rounding hazard."""
    for path in sorted((STREAMS / "core").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "float", f"{path.name}:{node.lineno} calls float()"
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                raise AssertionError(f"{path.name}:{node.lineno} has a float literal")
