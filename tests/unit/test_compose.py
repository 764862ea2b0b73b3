"""docker-compose.yml and the Dockerfile, checked without a container engine.

The compose file must validate against the Compose Specification schema (vendored in
deploy/compose-spec.schema.json, see deploy/README.md), its meterstream services must run
commands the CLI accepts with settings that load, and Prometheus must scrape the
services and ports the file defines.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streams import cli
from streams.config import load_settings
from streams.fakes.stripe.__main__ import parse_args as fakestripe_args

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCHEMA = json.loads((ROOT / "deploy" / "compose-spec.schema.json").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
MS_SERVICES = sorted(n for n, s in SERVICES.items() if s.get("image") == "meterstream:local")


def test_compose_file_matches_the_compose_spec() -> None:
    validator = jsonschema.Draft201909Validator
    validator.check_schema(SCHEMA)
    errors = sorted(validator(SCHEMA, format_checker=validator.FORMAT_CHECKER)
                    .iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_schema_rejects_a_misspelt_key() -> None:
    broken = {"services": {"worker": {"image": "x", "comand": ["worker"]}}}
    assert not jsonschema.Draft201909Validator(SCHEMA).is_valid(broken)


def test_every_stage_is_a_service() -> None:
    assert {"kafka", "topics", "worker", "sink", "fakestripe", "stripe-mock", "prometheus",
            "grafana", "loadgen"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES["stripe-mock"]["image"].startswith("stripe/stripe-mock:")
    assert SERVICES["loadgen"]["profiles"] == ["loadgen"]
    assert SERVICES["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict)
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("name", MS_SERVICES)
def test_meterstream_service_command_and_settings(name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    service = SERVICES[name]
    command = service.get("command", [])
    if service.get("entrypoint") == ["python", "-m", "streams.fakes.stripe"]:
        cfg = fakestripe_args(command)
        assert cfg.port == 12111
        return
    assert "entrypoint" not in service  # the image's entry point: meterstream
    cli._parser().parse_args(command)
    for key in list(os.environ):
        if key.startswith("METERSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in _env(service).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()  # raises ConfigError naming any unknown or bad variable
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.worker.web_host == "0.0.0.0"


def _targets(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                yield job["job_name"], target


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = dict(_targets(config))
    assert targets == {"meterstream-worker": "worker:6066", "meterstream-sink": "sink:6067"}
    assert _env(SERVICES["worker"])["METERSTREAM_WORKER__WEB_PORT"] == "6066"
    assert SERVICES["sink"]["command"][-2:] == ["--metrics-port", "6067"]
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts


def test_mounted_paths_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["meterstream"\]', text, re.M)
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"Dockerfile copies a missing {path}"
