"""The README's Kubernetes operations, followed as written against the rendered chart.

Each ``helm install`` / ``helm upgrade`` line of the README section is replayed as
``helm template`` with the same release, namespace and values file (the one the README
writes with a heredoc); each ``kubectl`` line must name objects, Secrets and labels that
the rendered release has; the scale-out rule (replicas up to the partition count) holds.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from streams.testing.helm import CHART, HelmError, HelmMissingError, Manifest, containers, render

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### On Kubernetes (Helm)"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    return text[start:end]


def _commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", _section(), re.S)
    lines: list[str] = []
    for block in blocks:
        block = re.sub(r"<<'VALUES'\n.*?\nVALUES\n", "\n", block, flags=re.S)
        lines += [line for line in block.splitlines() if line.strip()]
    return lines


def _values_file(tmp_path: Path) -> Path:
    (body,) = re.findall(r"cat > my-values.yaml <<'VALUES'\n(.*?)\nVALUES\n", _section(), re.S)
    path = tmp_path / "my-values.yaml"
    path.write_text(body + "\n")
    return path


def _helm(verb: str) -> list[list[str]]:
    return [shlex.split(c)[2:] for c in _commands() if c.startswith(f"helm {verb} ")]


def _release_and_namespace(args: list[str]) -> tuple[str, str]:
    return args[0], args[args.index("-n") + 1]


def _render_as_written(args: list[str], tmp_path: Path,
                       extra: dict[str, str] | None = None) -> list[Manifest]:
    release, namespace = _release_and_namespace(args)
    assert (ROOT / args[1]).resolve() == CHART
    assert args[args.index("-f") + 1] == "my-values.yaml"
    try:
        return render([_values_file(tmp_path)], extra, release=release, namespace=namespace)
    except HelmMissingError as exc:
        pytest.fail(str(exc))


def test_the_section_covers_install_upgrade_scale_out_and_rollback() -> None:
    verbs = {shlex.split(c)[1] for c in _commands() if c.startswith("helm ")}
    assert {"install", "upgrade", "rollback", "history"} <= verbs
    assert "worker.replicas" in _section() and "topics.partitions" in _section()


@pytest.mark.parametrize("verb", ["install", "upgrade"])
def test_install_and_upgrade_render(verb: str, tmp_path: Path) -> None:
    (args,) = _helm(verb)
    manifests = _render_as_written(args, tmp_path)
    objects = {(m.kind.lower(), m.name) for m in manifests}
    namespace = args[args.index("-n") + 1]
    for command in _commands():
        words = shlex.split(command)
        if words[0] != "kubectl" or "create" in words[:2]:
            continue
        assert words[1:3] == ["-n", namespace], command
        for ref in re.findall(r"\b(statefulset|deployment|job)/([\w.-]+)", command):
            assert ref in objects, f"{command}: the release has no {ref[0]}/{ref[1]}"


def test_readme_secrets_are_the_ones_the_release_reads(tmp_path: Path) -> None:
    (args,) = _helm("install")
    created = set()
    for command in _commands():
        words = shlex.split(command)
        if words[:2] == ["kubectl", "-n"] and words[3:6] == ["create", "secret", "generic"]:
            key = words[7].removeprefix("--from-literal=").split("=", 1)[0]
            created.add((words[6], key))
    read = set()
    for m in _render_as_written(args, tmp_path):
        if m.kind in ("StatefulSet", "Deployment", "Job"):
            for c in containers(m):
                for e in c["env"]:
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        read.add((ref["name"], ref["key"]))
    assert read == created


def test_readme_image_is_the_one_it_builds(tmp_path: Path) -> None:
    (args,) = _helm("install")
    (build,) = [c for c in _commands() if c.startswith("docker build")]
    image = shlex.split(build)[shlex.split(build).index("-t") + 1]
    for m in _render_as_written(args, tmp_path):
        if m.kind in ("StatefulSet", "Deployment", "Job"):
            assert {c["image"] for c in containers(m)} == {image}


def test_scale_out_up_to_the_partition_count(tmp_path: Path) -> None:
    (args,) = _helm("upgrade")
    partitions = yaml.safe_load(_values_file(tmp_path).read_text())["topics"]["partitions"]
    before = _render_as_written(args, tmp_path)
    manifests = _render_as_written(args, tmp_path, {"worker.replicas": str(partitions)})
    (sts,) = [m for m in manifests if m.kind == "StatefulSet"]
    assert sts.doc["spec"]["replicas"] == partitions
    # Only the count changes: the running workers are not restarted by a scale-out.
    (old,) = [m for m in before if m.kind == "StatefulSet"]
    assert old.doc["spec"]["template"] == sts.doc["spec"]["template"]
    with pytest.raises(HelmError, match=r"is more than topics\.partitions"):
        _render_as_written(args, tmp_path, {"worker.replicas": str(partitions + 1)})


def test_volume_names_and_labels_in_the_readme(tmp_path: Path) -> None:
    (args,) = _helm("install")
    (sts,) = [m for m in _render_as_written(args, tmp_path) if m.kind == "StatefulSet"]
    claim = sts.doc["spec"]["volumeClaimTemplates"][0]["metadata"]
    assert f"`{claim['name']}-{sts.name}-N`" in _section()
    (delete,) = [c for c in _commands() if "delete pvc" in c]
    selector = shlex.split(delete)[shlex.split(delete).index("-l") + 1]
    wanted = dict(pair.split("=") for pair in selector.split(","))
    assert wanted.items() <= claim["labels"].items()


def test_rollback_names_the_installed_release() -> None:
    (install,) = _helm("install")
    for verb in ("rollback", "history"):
        (args,) = _helm(verb)
        assert _release_and_namespace(args) == _release_and_namespace(install)
