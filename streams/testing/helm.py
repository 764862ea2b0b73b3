"""Render the Helm chart offline, for the chart's tests.

``helm`` is the one that scripts/bootstrap.sh installs into ``.cache/bin`` (``go install``
from the Go module proxy), else one on PATH. Without it :func:`helm_binary` raises
:class:`HelmMissingError`, whose message says how to install it: the chart's tests fail
rather than skip, so CI cannot pass them unchecked.

Nothing here talks to a cluster: ``helm template`` and ``helm lint`` only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streams.errors import MeterstreamError

__all__ = [
    "CHART",
    "KUBE_VERSION",
    "HelmError",
    "HelmMissingError",
    "Manifest",
    "containers",
    "helm_binary",
    "lint",
    "render",
]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "meterstream"
HELM_ENV = "HELM_BIN"
# The Kubernetes release the chart is rendered for and validated against (the newest
# whose schemas the kubernetes-validate package ships). Without a cluster, helm would
# assume v1.20, older than the chart's kubeVersion.
KUBE_VERSION = "1.37.0"


class HelmMissingError(MeterstreamError):
    """No helm binary: run scripts/bootstrap.sh."""


class HelmError(MeterstreamError):
    """helm exited non-zero; the message holds its output."""


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template that produced it."""

    source: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


def helm_binary() -> str:
    """The helm to use: ``$HELM_BIN``, then ``.cache/bin/helm``, then PATH."""
    candidates = [os.environ.get(HELM_ENV, ""), str(ROOT / ".cache" / "bin" / "helm")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    found = shutil.which("helm")
    if found is None:
        raise HelmMissingError(
            "helm not found in .cache/bin or on PATH: run scripts/bootstrap.sh, which "
            "installs it with `go install helm.sh/helm/v3/cmd/helm@<version>`"
        )
    return found


def _values_args(values_files: Iterable[Path], set_values: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["--values", str(path)]
    for key, value in set_values.items():
        args += ["--set", f"{key}={value}"]
    return args


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    # No network, no cluster: keep helm's caches and config out of the user's home.
    env = {**os.environ, "HELM_CACHE_HOME": str(ROOT / ".cache" / "helm" / "cache"),
           "HELM_CONFIG_HOME": str(ROOT / ".cache" / "helm" / "config"),
           "HELM_DATA_HOME": str(ROOT / ".cache" / "helm" / "data")}
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def render(values_files: Iterable[Path] = (), set_values: Mapping[str, str] | None = None,
           *, release: str = "billing", namespace: str = "metering",
           kube_version: str = KUBE_VERSION) -> list[Manifest]:
    """``helm template`` the chart (hooks included); raise HelmError with helm's message."""
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", kube_version, *_values_args(values_files, set_values or {})]
    run = _run(args)
    if run.returncode != 0:
        raise HelmError(run.stderr.strip() or run.stdout.strip())
    return list(_split(run.stdout))


def lint(values_files: Iterable[Path] = (), set_values: Mapping[str, str] | None = None
         ) -> str:
    """``helm lint --strict``; return its output, raise HelmError when it fails."""
    run = _run(["lint", "--strict", str(CHART), *_values_args(values_files, set_values or {})])
    if run.returncode != 0:
        raise HelmError(run.stdout + run.stderr)
    return run.stdout


def _split(stream: str) -> Iterator[Manifest]:
    source = ""
    for chunk in stream.split("\n---"):
        for line in chunk.splitlines():
            if line.startswith("# Source: "):
                source = line.removeprefix("# Source: ").strip()
                break
        doc = yaml.safe_load(chunk)
        if doc:
            yield Manifest(source=source, doc=doc)


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    """The containers of a workload's pod template (StatefulSet, Deployment, Job)."""
    pod = manifest.doc["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]
