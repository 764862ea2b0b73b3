"""The dependency direction, checked on the source: core is pure, only runtime/ uses faust,
the producer SDK needs only the base dependencies."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

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


def test_core_imports_only_stdlib_and_orjson() -> None:
    allowed = set(sys.stdlib_module_names) | {"orjson", "streams"}
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


# -- each install brings what its code imports -----------------------------------------------

PYPROJECT = tomllib.loads((STREAMS.parent / "pyproject.toml").read_text())
# The modules a distribution provides, where the names differ.
MODULES_OF = {
    "faust-streaming": {"faust", "mode"},
    "prometheus-client": {"prometheus_client"},
    "pydantic-settings": {"pydantic_settings", "pydantic"},
    "metronome-sdk": {"metronome"},
    "boto3": {"boto3", "botocore"},
}
# Which packages of streams/ each install runs. The SDK is the base install (extra `sdk`
# adds nothing): a compute worker gets aiokafka, orjson and pydantic-settings, never the
# worker's faust-streaming and rocksdict nor the sink's stripe.
INSTALLS = {
    "sdk": ["streams.sdk"],
    "worker": ["streams.runtime"],
    "sink": ["streams.sink"],
    "import": ["streams.importer"],
}


def _distribution_modules(requirements: list[str]) -> set[str]:
    modules: set[str] = set()
    for requirement in requirements:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        if name == "meterstream":
            extras = requirement[requirement.index("[") + 1 : requirement.index("]")]
            for extra in extras.split(","):
                modules |= _distribution_modules(
                    PYPROJECT["project"]["optional-dependencies"][extra])
            continue
        modules |= MODULES_OF.get(name, {name.replace("-", "_")})
    return modules


def allowed_modules(extra: str) -> set[str]:
    """The base dependencies and those of ``extra``, as importable top-level modules."""
    project = PYPROJECT["project"]
    return _distribution_modules(
        [*project["dependencies"], *project["optional-dependencies"][extra]])


def _runtime_imports(path: Path) -> list[str]:
    """Absolute module names ``path`` imports when it runs (``if TYPE_CHECKING:`` blocks
    excluded, imports inside functions included: they run too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            # `from streams.x import y` may import the submodule streams.x.y
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (STREAMS / rel / "__init__.py", (STREAMS / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def import_closure(packages: list[str]) -> dict[str, set[str]]:
    """Every streams module that ``packages`` (all their modules) import, transitively,
    with the packages around them, mapped to the third-party top-level modules each
    imports."""
    todo: list[str] = []
    for package in packages:
        root = STREAMS.joinpath(*package.split(".")[1:])
        todo.extend(".".join(("streams", *p.relative_to(STREAMS).with_suffix("").parts))
                    for p in root.rglob("*.py") if p.stem not in ("__init__", "__main__"))
        todo.append(package)
    seen: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        third_party: set[str] = set()
        for imported in _runtime_imports(path):
            top = imported.split(".")[0]
            if top == "streams":
                todo.append(imported)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
        seen[name] = third_party
    return seen


def test_the_closure_follows_imports() -> None:
    closure = import_closure(["streams.sdk"])
    for module in ("streams.sdk.producer", "streams.sdk.delivery", "streams.kafka.client",
                   "streams.config", "streams.errors", "streams"):
        assert module in closure
    assert "aiokafka" in closure["streams.sdk.producer"]
    assert "faust" in import_closure(["streams.runtime"])["streams.runtime.app"]
    assert {"faust", "mode", "rocksdict"} <= allowed_modules("worker")
    assert not {"faust", "rocksdict", "stripe", "metronome", "prometheus_client", "aiohttp",
                "rich"} & allowed_modules("sdk")


@pytest.mark.parametrize("extra", sorted(INSTALLS))
def test_each_install_brings_what_its_code_imports(extra: str) -> None:
    allowed = allowed_modules(extra)
    bad = {module: sorted(libs - allowed)
           for module, libs in import_closure(INSTALLS[extra]).items() if libs - allowed}
    assert not bad, (f"`pip install meterstream[{extra}]` does not bring what {bad} import "
                     f"(it has {sorted(allowed)}): fix pyproject.toml or the import")
