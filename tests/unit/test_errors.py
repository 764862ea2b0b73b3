"""One exception tree: every exception class in ``streams`` is under MeterstreamError, and
the tree drawn in streams/errors.py's docstring names every one of them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import streams.errors
from streams.errors import MeterstreamError

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def _module_name(path: Path) -> str:
    parts = path.relative_to(STREAMS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exception_classes() -> list[tuple[str, type[BaseException]]]:
    """(qualified name, class) of every class in streams/ that derives from BaseException.

    The AST picks the candidates (a base whose name ends in Error or Exception); importing
    the module then tells for sure, through the real class hierarchy.
    """
    found: list[tuple[str, type[BaseException]]] = []
    for path in sorted(STREAMS.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        names = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
                     for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                names.append(node.name)
        if not names:
            continue
        module = importlib.import_module(_module_name(path))
        for name in names:
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append((f"{module.__name__}.{name}", cls))
    return found


def test_the_scan_finds_the_exceptions_defined_outside_errors_py() -> None:
    names = {qualified for qualified, _ in exception_classes()}
    assert "streams.errors.PlanError" in names
    assert "streams.fakes.stripe.wire.ApiError" in names
    assert "streams.fakes.metronome.api.MetronomeApiError" in names


def test_every_exception_is_under_the_root() -> None:
    outside = [qualified for qualified, cls in exception_classes()
               if not issubclass(cls, MeterstreamError)]
    assert not outside, f"not under MeterstreamError: {outside}"


def test_the_docstring_draws_every_exception() -> None:
    doc = streams.errors.__doc__ or ""
    missing = [qualified for qualified, cls in exception_classes()
               if cls.__name__ not in doc]
    assert not missing, f"not drawn in streams/errors.py's tree: {missing}"


def test_errors_all_lists_the_classes_it_defines() -> None:
    defined = sorted(name for name, value in vars(streams.errors).items()
                     if isinstance(value, type) and issubclass(value, BaseException)
                     and value.__module__ == "streams.errors")
    assert sorted(streams.errors.__all__) == defined
