"""The chart's container environments against the settings model of streams/config.py.

The model is read at test time, so a setting added, renamed or removed there is checked
here without editing this file:

- every METERSTREAM_* variable a container sets is a setting of the model;
- the worker sets every setting the model requires, and every setting whose default
  cannot work in a pod (POD_SETTINGS, each with its reason);
- each container's environment, with its Secrets filled by placeholders, loads through
  load_settings() and its command parses with the CLI's own parser;
- every secret of the model (a SecretStr field) comes from a Secret, never a value.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from streams import cli
from streams.config import ENV_PREFIX, Settings, load_settings
from streams.sink.plan import window_problems
from streams.testing.helm import CHART, HelmMissingError, Manifest, containers, render

ROOT = Path(__file__).resolve().parents[2]
VALUES_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
WEB_VIEWS = ROOT / "streams" / "runtime" / "web.py"
POD_NAME = "billing-meterstream-worker-0"

# Settings whose defaults are wrong in a pod, so the chart must set them.
POD_SETTINGS = {
    "KAFKA__BOOTSTRAP_SERVERS": "the default is 127.0.0.1:9092",
    "WORKER__WEB_HOST": "the default binds to localhost: probes and scrapes could not reach it",
    "WORKER__WEB_PORT": "the container port, the probes and the Service use it",
    "WORKER__STATE_DIR": "RocksDB must live on the pod's persistent volume",
    "WORKER__INSTANCE_ID": "the static member id must survive a restart: the pod's name",
    "WORKER__ROCKSDB_MEMORY_MB": "RocksDB's memory must fit the container's memory limit",
}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_secret(a) for a in typing.get_args(annotation))
    return False


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(setting name without METERSTREAM_, field) for every leaf of the model."""
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        nested = _model_of(field.annotation)
        if nested is None:
            yield env, field
        else:
            yield from _fields(nested, env + "__")


SETTINGS = dict(_fields(Settings))
REQUIRED = {name for name, field in SETTINGS.items() if field.is_required()}
SECRETS = {name for name, field in SETTINGS.items() if _is_secret(field.annotation)}


def test_the_model_walk_sees_the_settings() -> None:
    assert {"KAFKA__BOOTSTRAP_SERVERS", "METERS", "WORKER__WEB_PORT",
            "STRIPE__API_KEY"} <= SETTINGS.keys()
    assert {"KAFKA__SASL_PASSWORD", "STRIPE__API_KEY", "WORKER__API_TOKEN"} <= SECRETS
    assert POD_SETTINGS.keys() <= SETTINGS.keys()


@functools.cache
def _rendered(values: Path) -> tuple[Manifest, ...]:
    try:
        return tuple(render([values]))
    except HelmMissingError as exc:
        pytest.fail(str(exc))


def _workloads(values: Path) -> list[tuple[str, dict[str, Any], Manifest]]:
    """(component, container, manifest) for every meterstream container."""
    out = []
    for m in _rendered(values):
        if m.kind in ("StatefulSet", "Deployment", "Job"):
            component = m.doc["metadata"]["labels"]["app.kubernetes.io/component"]
            out += [(component, c, m) for c in containers(m)]
    return out


def _container(values: Path, component: str) -> dict[str, Any]:
    (found,) = [c for comp, c, _ in _workloads(values) if comp == component]
    return found


def _setting(env_name: str) -> str:
    assert env_name.startswith(ENV_PREFIX), env_name
    return env_name.removeprefix(ENV_PREFIX).upper()


def _resolve(entry: dict[str, Any]) -> str:
    """The value a container would see, with placeholders for Secrets."""
    if "value" in entry:
        return str(entry["value"])
    source = entry["valueFrom"]
    if "fieldRef" in source:
        assert source["fieldRef"]["fieldPath"] == "metadata.name", source
        return POD_NAME
    assert "secretKeyRef" in source, source
    return "sk_test_placeholder" if entry["name"].endswith("STRIPE__API_KEY") else "placeholder"


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_every_variable_is_a_setting(values: Path) -> None:
    for component, container, _ in _workloads(values):
        names = [_setting(e["name"]) for e in container["env"]]
        unknown = {n for n in names if n not in SETTINGS}
        assert not unknown, f"{component} sets variables streams/config.py does not read: " \
                            f"{sorted(unknown)}"


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_worker_sets_every_required_setting(values: Path) -> None:
    names = {_setting(e["name"]) for e in _container(values, "worker")["env"]}
    missing = sorted((REQUIRED | POD_SETTINGS.keys()) - names)
    assert not missing, f"the worker's environment lacks {missing}"


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_every_container_sets_what_it_needs_in_a_pod(values: Path) -> None:
    for component, container, _ in _workloads(values):
        env = {_setting(e["name"]): e for e in container["env"]}
        missing = sorted(REQUIRED - env.keys())
        assert not missing, f"{component} lacks {missing}"
        assert "KAFKA__BOOTSTRAP_SERVERS" in env, component
        # The sink's /metrics binds to WORKER__WEB_HOST too.
        assert env["WORKER__WEB_HOST"]["value"] == "0.0.0.0", component


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_secrets_come_from_secrets(values: Path) -> None:
    for component, container, _ in _workloads(values):
        for entry in container["env"]:
            name = _setting(entry["name"])
            if name in SECRETS:
                assert "value" not in entry, f"{component}: {entry['name']} in clear"
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry
            elif "value" in entry:
                assert not re.search(r"\b[sr]k_(live|test)_", str(entry["value"])), entry["name"]


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_each_container_loads_its_settings_and_parses_its_command(
        values: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for component, container, _ in _workloads(values):
        cli._parser().parse_args(container["args"])
        with monkeypatch.context() as patch:
            for key in [k for k in __import__("os").environ if k.startswith(ENV_PREFIX)]:
                patch.delenv(key)
            for entry in container["env"]:
                patch.setenv(entry["name"], _resolve(entry))
            settings = load_settings()  # ConfigError names every bad variable
        assert settings.worker.web_host == "0.0.0.0"
        if component == "sink":
            assert not window_problems(settings.meters, settings.aggregator.window_s)


def test_sasl_ssl_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _container(CHART / "ci" / "sasl-ssl-values.yaml", "worker")["env"]
    by_name = {_setting(e["name"]): e for e in env}
    assert by_name["KAFKA__SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert by_name["KAFKA__SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert by_name["KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "meterstream-kafka", "key": "password"}
    assert by_name["KAFKA__SSL_CAFILE"]["value"] == "/etc/meterstream/kafka-tls/ca.crt"


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_worker_identity_ports_and_probes(values: Path) -> None:
    worker = _container(values, "worker")
    env = {_setting(e["name"]): e for e in worker["env"]}
    assert env["WORKER__INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath":
                                                                    "metadata.name"}}
    (port,) = worker["ports"]
    assert env["WORKER__WEB_PORT"]["value"] == str(port["containerPort"])
    views = set(re.findall(r'@app\.page\("([^"]+)"\)', WEB_VIEWS.read_text()))
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        assert worker[probe]["httpGet"] == {"path": path, "port": port["name"]}
        assert path in views, f"{WEB_VIEWS.name} serves no {path}"


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_sink_metrics_port(values: Path) -> None:
    sink = _container(values, "sink")
    args = cli._parser().parse_args(sink["args"])
    (port,) = sink["ports"]
    assert args.metrics_port == port["containerPort"]


def test_sink_engine_settings_pass_through() -> None:
    # Another engine's settings go in sink.env, after the Stripe ones: no template change.
    sink = _container(CHART / "ci" / "all-on-values.yaml", "sink")
    names = [e["name"] for e in sink["env"]]
    assert names[-1] == "METERSTREAM_STRIPE__TIMEOUT_S"
    assert "METERSTREAM_STRIPE__RATE_LIMIT_PER_S" in names


def test_stripe_off_leaves_the_engine_to_sink_env() -> None:
    sink = [c for m in render([CHART / "ci" / "default-values.yaml"],
                              {"sink.stripe.enabled": "false"})
            if m.kind == "Deployment" for c in containers(m)]
    assert not [e for e in sink[0]["env"] if "STRIPE__" in e["name"]]
