"""The build: the aggregation core's hot modules compiled to C with mypyc.

Everything else is in pyproject.toml; this file only adds the compiled modules.
docs/architecture.md ("The compiled core") says why, and what a build without a C compiler
gets: the same modules as Python source, with the same results, about 20% slower.

- ``METERSTREAM_PURE_PYTHON=1`` at build time: compile nothing.
- A build that cannot compile (no mypyc, no C compiler) installs the pure-Python package
  and says so, rather than failing: the SDK alone needs no compiler.
- The build writes ``streams/core/compiled_from.txt``: the SHA-256 of each compiled
  module's source. ``streams.core`` reads it at import and uses the sources instead of
  compiled modules that were built from other sources (an edit after the last build).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "streams" / "core"
STAMP = CORE / "compiled_from.txt"


def _compiled_modules() -> tuple[str, ...]:
    """streams.core.COMPILED, read without importing the package (its dependencies may not
    be installed yet)."""
    for node in ast.parse((CORE / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            names: tuple[str, ...] = ast.literal_eval(node.value)
            return names
    raise RuntimeError("streams/core/__init__.py defines no COMPILED")


COMPILED = _compiled_modules()


def _say(message: str) -> None:
    print(f"meterstream build: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """Build the compiled core, or leave it pure Python if that fails. After a build, the
    record of the sources goes beside the compiled modules: in the source tree for an
    editable (in-place) build, in the wheel's tree otherwise."""

    def run(self) -> None:
        in_place = self.inplace or getattr(self, "editable_mode", False)
        stamps = [STAMP] if in_place else [Path(self.build_lib) / STAMP.relative_to(ROOT)]
        for stamp in stamps:
            stamp.unlink(missing_ok=True)
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:  # no C compiler, a compiler error: the source still works
            _say(f"compiling the core failed ({exc!r}); it stays pure Python")
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)
            return
        lines = [f"{name} {hashlib.sha256((CORE / f'{name}.py').read_bytes()).hexdigest()}"
                 for name in COMPILED]
        for stamp in stamps:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text("\n".join(lines) + "\n")


def _ext_modules() -> list[Any]:
    if os.environ.get("METERSTREAM_PURE_PYTHON") == "1":
        _say("METERSTREAM_PURE_PYTHON=1: the core stays pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed; the core stays pure Python")
        return []
    # (Not the project's mypy settings: their plugins need the runtime dependencies, which
    # a build environment does not have. A third-party module the build environment lacks
    # is Any to the compiler; msgspec and orjson are there, see pyproject.toml.)
    args = [f"streams/core/{name}.py" for name in COMPILED]
    args += ["--config-file", os.devnull, "--ignore-missing-imports"]
    try:
        extensions: list[Any] = mypycify(args, opt_level="3", debug_level="1",
                                         group_name="streams_core")
    except (Exception, SystemExit) as exc:
        _say(f"mypyc could not compile the core ({exc!r}); it stays pure Python")
        return []
    return extensions


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
