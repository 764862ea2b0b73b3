"""The monitoring config agrees with the code: every metric that a Grafana panel or an
alert rule reads is one that meterstream exports, and promtool accepts the config.

promtool comes from Debian's ``prometheus`` package (scripts/bootstrap.sh installs it);
without it these tests fail rather than skip, so CI cannot pass them unchecked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

import streams.observability.metrics  # noqa: F401  (registers the aggregator's instruments)
from streams.runtime.state_size import directory_size_bytes
from streams.sink.metrics import default_metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "meterstream.json"

# Series that Prometheus itself synthesises for every target.
PROMETHEUS_BUILTINS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# Every stage of the pipeline has at least one panel.
DASHBOARD_MUST_SHOW = (
    "meterstream_events_total",
    "meterstream_event_time_lag_seconds",
    "meterstream_consumer_lag_messages",
    "meterstream_open_window_starts",
    "meterstream_watermark_timestamp_seconds",
    "meterstream_summaries_total",
    "meterstream_alerts_total",
    "meterstream_stripe_requests_total",
    "meterstream_stripe_request_duration_seconds_bucket",
    "meterstream_sink_pending_summaries",
    "meterstream_dlq_messages_total",
    "meterstream_sink_dlq_total",
    "meterstream_state_writes_total",
    "meterstream_rocksdb_size_bytes",
    "meterstream_rocksdb_memory_bytes",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
)

_PROMQL_WORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
})


def _sample_names(family: Metric) -> set[str]:
    """The series names a metric family exposes, also before any labelled child exists."""
    name = family.name
    if family.type == "counter":
        return {f"{name}_total", f"{name}_created"}
    if family.type == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if family.type == "summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name} | {s.name for s in family.samples}


def _registry_names(registry: CollectorRegistry) -> set[str]:
    return {n for family in registry.collect() for n in _sample_names(family)}


def exported_names() -> set[str]:
    """Everything the worker's and the sink's /metrics can expose (default registry:
    meterstream's instruments plus the process, platform and GC collectors)."""
    default_metrics()
    return _registry_names(REGISTRY)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Drops string literals, label matchers, range and subquery brackets, grouping clauses
    and template variables; what remains that is an identifier not followed by ``(`` and
    not a PromQL keyword is a metric name.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\$\w+", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if word.lower() in _PROMQL_WORDS or s[m.end():].lstrip().startswith("("):
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # a unit suffix such as the "m" of 10m or the "e" of 1e3
        names.add(word)
    return names


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    def walk(panels: list[dict[str, object]]) -> Iterator[tuple[str, str]]:
        for p in panels:
            for t in p.get("targets", []) or []:  # type: ignore[attr-defined]
                yield str(p.get("title")), str(t["expr"])
            yield from walk(p.get("panels", []) or [])  # type: ignore[arg-type]

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def _rule_exprs() -> Iterator[tuple[str, str]]:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield str(rule.get("alert") or rule.get("record")), str(rule["expr"])


def test_promql_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, instance) (rate(a_seconds_bucket{job=~"x.*",'
            'le!="+Inf"}[5m]))) / on (instance) group_left b_total offset 1h > 1e3 and '
            "time() - c_seconds > 2 * 3600")
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total", "c_seconds"}


def test_process_collector_exports_process_metrics() -> None:
    names = exported_names()
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes",
            "process_open_fds"} <= names


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_queried_metric_is_exported(source: str) -> None:
    exprs = list(_dashboard_exprs() if source == "dashboard" else _rule_exprs())
    assert exprs, f"no expressions found in the {source}"
    known = exported_names() | PROMETHEUS_BUILTINS
    unknown = {(where, name) for where, expr in exprs
               for name in promql_metric_names(expr) if name not in known}
    assert not unknown, f"metrics queried but not exported: {sorted(unknown)}"


def test_dashboard_shows_every_stage() -> None:
    used = {n for _, expr in _dashboard_exprs() for n in promql_metric_names(expr)}
    missing = [n for n in DASHBOARD_MUST_SHOW if n not in used]
    assert not missing, f"no dashboard panel for {missing}"


def test_exported_names_follow_conventions() -> None:
    for family in REGISTRY.collect():
        if not family.name.startswith("meterstream_"):
            continue
        assert "customer" not in {label for s in family.samples for label in s.labels}
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client appends it once


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package "
                    "(apt-get install prometheus; scripts/bootstrap.sh does)")
    return path


def test_promtool_check_rules() -> None:
    assert RULES
    run = subprocess.run([_promtool(), "check", "rules", *map(str, RULES)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_check_config() -> None:
    run = subprocess.run([_promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 rule files found" in run.stdout + run.stderr


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    grafana = ROOT / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((grafana / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    providers = yaml.safe_load((grafana / "dashboards" / "meterstream.yml").read_text())
    assert providers["providers"][0]["options"]["path"]
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_directory_size_bytes(tmp_path: Path) -> None:
    assert directory_size_bytes(tmp_path / "missing") == 0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "000001.sst").write_bytes(b"x" * 1000)
    (tmp_path / "LOG").write_bytes(b"y" * 24)
    assert directory_size_bytes(tmp_path) == 1024
