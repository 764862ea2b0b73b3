"""The Helm chart (deploy/helm/meterstream), checked offline: no cluster, no network.

For each values set in the chart's ci/ folder (the defaults plus the required values,
SASL_SSL, every optional part on): ``helm lint --strict``, ``helm template``, and every
rendered object validated against the OpenAPI schemas of a current Kubernetes release
(the ``kubernetes-validate`` package ships them). The PrometheusRule must hold
deploy/prometheus's rules and pass promtool; the dashboard ConfigMap must hold
deploy/grafana's dashboard byte for byte. Wrong values fail at install time with a
message that names them.

helm comes from scripts/bootstrap.sh (.cache/bin/helm); without it these tests fail with
that instruction rather than skip. The worker's and sink's environments are checked
against the settings model in test_helm_settings.py.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streams.testing.helm import (
    CHART,
    KUBE_VERSION,
    HelmError,
    HelmMissingError,
    Manifest,
    lint,
    render,
)

ROOT = Path(__file__).resolve().parents[2]
VALUES_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
DEFAULT = CHART / "ci" / "default-values.yaml"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "meterstream.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "meterstream.json"
# Custom resources of the Prometheus operator: no Kubernetes schema covers them; they are
# checked against the operator's models (generated from its CRDs; the
# cloudcoil-models-prometheus-operator package) and against what they must select and hold.
OPERATOR_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})


@functools.cache
def _rendered(values: Path) -> tuple[Manifest, ...]:
    try:
        return tuple(render([values]))
    except HelmMissingError as exc:
        pytest.fail(str(exc))


def _one(manifests: tuple[Manifest, ...], kind: str, suffix: str = "") -> Manifest:
    found = [m for m in manifests if m.kind == kind and m.name.endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[m.name for m in found]}"
    return found[0]


def test_rendered_for_a_current_kubernetes_release() -> None:
    latest = tuple(int(p) for p in str(kubernetes_validate.latest_version()).split("."))
    assert tuple(int(p) for p in KUBE_VERSION.split(".")) <= latest
    assert latest >= (1, 37, 0)


def test_values_sets_cover_default_sasl_ssl_and_everything_on() -> None:
    assert {p.name for p in VALUES_SETS} == {
        "default-values.yaml", "sasl-ssl-values.yaml", "all-on-values.yaml"}


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_helm_lint(values: Path) -> None:
    try:
        out = lint([values])
    except HelmMissingError as exc:
        pytest.fail(str(exc))
    assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda p: p.name)
def test_every_manifest_matches_the_kubernetes_schemas(values: Path) -> None:
    version = KUBE_VERSION
    problems = []
    for m in _rendered(values):
        if m.kind in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(m.doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{m.source} {m.kind}/{m.name}: {exc.message}")
    assert not problems, "\n".join(problems)


def _operator_problems(doc: dict[str, Any]) -> str | None:
    """Why ``doc`` is not a valid operator resource, or None. The models accept unknown
    fields silently, so a field that does not survive the round trip is one."""
    # Imported here: its models take seconds to import, paid only by this check.
    from cloudcoil.models.prometheus_operator import v1 as operator_v1

    model = getattr(operator_v1, doc["kind"])
    try:
        back = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True,
                                                    mode="json")
    except ValueError as exc:  # pydantic's ValidationError
        return str(exc)
    return None if back == doc else f"unknown fields: {json.dumps(doc)} != {json.dumps(back)}"


def test_operator_resources_match_the_operator_models() -> None:
    docs = [m.doc for m in _rendered(ALL_ON) if m.kind in OPERATOR_KINDS]
    assert sorted(d["kind"] for d in docs) == ["PrometheusRule", "ServiceMonitor",
                                                "ServiceMonitor"]
    problems = [p for p in map(_operator_problems, docs) if p]
    assert not problems, "\n".join(problems)
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    misspelt = json.loads(json.dumps(monitor))
    misspelt["spec"]["endpoints"][0]["relabeling"] = misspelt["spec"]["endpoints"][0].pop(
        "relabelings")
    assert _operator_problems(misspelt)
    misspelt["spec"]["endpoints"][0]["interval"] = 30
    assert "interval" in str(_operator_problems(misspelt))


def test_the_validator_rejects_a_misspelt_field() -> None:
    sts = _one(_rendered(DEFAULT), "StatefulSet", "-worker").doc
    broken = json.loads(json.dumps(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_default_release_objects() -> None:
    kinds = sorted((m.kind, m.name) for m in _rendered(DEFAULT))
    assert kinds == [
        ("Deployment", "billing-meterstream-sink"),
        ("Job", "billing-meterstream-topics"),
        ("PodDisruptionBudget", "billing-meterstream-worker"),
        ("Service", "billing-meterstream-sink"),
        ("Service", "billing-meterstream-worker"),
        ("ServiceAccount", "billing-meterstream"),
        ("StatefulSet", "billing-meterstream-worker"),
    ]


def test_all_on_adds_the_monitoring_objects() -> None:
    kinds = {(m.kind, m.name) for m in _rendered(ALL_ON)}
    assert {("ServiceMonitor", "billing-meterstream-worker"),
            ("ServiceMonitor", "billing-meterstream-sink"),
            ("PrometheusRule", "billing-meterstream"),
            ("ConfigMap", "billing-meterstream-dashboard")} <= kinds


def test_worker_statefulset_shape() -> None:
    manifests = _rendered(ALL_ON)
    sts = _one(manifests, "StatefulSet", "-worker").doc
    pod = sts["spec"]["template"]["spec"]
    service = _one(manifests, "Service", "-worker").doc
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["replicas"] == 12
    # RocksDB on a persistent volume per pod, mounted where STATE_DIR points.
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    (worker,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["METERSTREAM_WORKER__STATE_DIR"].startswith(mounts[claim["metadata"]["name"]])
    # Workers on different nodes; hard in this values set.
    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["topologyKey"] == "kubernetes.io/hostname"
    assert terms[0]["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    pdb = _one(manifests, "PodDisruptionBudget", "-worker").doc
    assert pdb["spec"]["selector"] == sts["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert worker["args"] == ["worker"]


def test_default_anti_affinity_is_soft() -> None:
    pod = _one(_rendered(DEFAULT), "StatefulSet", "-worker").doc["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100


def test_topics_create_is_a_pre_install_and_pre_upgrade_hook() -> None:
    job = _one(_rendered(DEFAULT), "Job", "-topics").doc
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_service_monitors_select_the_services_and_ports() -> None:
    manifests = _rendered(ALL_ON)
    rules_jobs = {"meterstream-worker", "meterstream-sink"}
    for component in ("worker", "sink"):
        monitor = _one(manifests, "ServiceMonitor", f"-{component}").doc
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        service = _one(manifests, "Service", f"-{component}").doc
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        # The job label that deploy/prometheus's rules and the dashboard query.
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        assert relabel["replacement"] == f"meterstream-{component}"
        rules_jobs.discard(relabel["replacement"])
    assert not rules_jobs
    # With an API token, /metrics needs it: the worker's monitor sends it from the Secret.
    worker = _one(manifests, "ServiceMonitor", "-worker").doc["spec"]["endpoints"][0]
    assert worker["authorization"] == {
        "type": "Bearer", "credentials": {"name": "meterstream-api", "key": "token"}}


def test_prometheus_rule_holds_the_deploy_rules() -> None:
    rule = _one(_rendered(ALL_ON), "PrometheusRule").doc
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert (CHART / "files" / RULES.name).read_bytes() == RULES.read_bytes(), (
        f"copy {RULES.relative_to(ROOT)} to {CHART.relative_to(ROOT)}/files/")


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package "
                    "(apt-get install prometheus; scripts/bootstrap.sh does)")
    rule = _one(_rendered(ALL_ON), "PrometheusRule").doc
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    run = subprocess.run([promtool, "check", "rules", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    count = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in run.stdout


def test_dashboard_configmap_equals_deploy_grafana() -> None:
    cm = _one(_rendered(ALL_ON), "ConfigMap", "-dashboard").doc
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Billing"}
    assert cm["data"]["meterstream.json"] == DASHBOARD.read_text()
    assert (CHART / "files" / DASHBOARD.name).read_bytes() == DASHBOARD.read_bytes(), (
        f"copy {DASHBOARD.relative_to(ROOT)} to {CHART.relative_to(ROOT)}/files/")
    json.loads(cm["data"]["meterstream.json"])


def test_values_schema_is_a_valid_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    # The defaults are valid apart from what has no default: the brokers and the Secret
    # with the Stripe key (ci/default-values.yaml sets just these).
    errors = jsonschema.Draft7Validator(schema).iter_errors(defaults)
    assert sorted(list(e.absolute_path) for e in errors) == [
        ["kafka", "bootstrapServers"], ["sink", "stripe", "apiKeySecret", "name"]]
    ci_defaults = yaml.safe_load(DEFAULT.read_text())
    assert ci_defaults == {"kafka": {"bootstrapServers": ci_defaults["kafka"]["bootstrapServers"]},
                           "sink": {"stripe": {"apiKeySecret": {"name": "meterstream-stripe"}}}}


# (values overrides, what helm's message must name). Each fails at install time.
BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"kafka": {"bootstrapServers": ""}}, "at '/kafka/bootstrapServers'"),
    ({"kafka": {"securityProtocol": "SASL_TLS"}}, "at '/kafka/securityProtocol'"),
    ({"kafka": {"securityProtocol": "SASL_SSL"}}, "at '/kafka/sasl/username'"),
    ({"kafka": {"securityProtocol": "SASL_SSL",
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": "ms"}}},
     "at '/kafka/sasl/passwordSecret/name'"),
    ({"meters": [{"name": "cpu_seconds", "stripe_event_name": "cpu", "unit_price_minor": 0.5}]},
     "at '/meters/0/unit_price_minor': got number, want string"),
    ({"worker": {"replicas": 9}}, "worker.replicas (9) is more than topics.partitions (8)"),
    ({"worker": {"replica": 3}}, "'replica' not allowed"),
    ({"worker": {"antiAffinity": "strict"}}, "at '/worker/antiAffinity'"),
    ({"sink": {"stripe": {"apiKeySecret": {"name": ""}}}}, "at '/sink/stripe/apiKeySecret/name'"),
    ({"sink": {"stripe": {"mode": "v3"}}}, "at '/sink/stripe/mode'"),
    ({"env": [{"name": "METERSTREAM_AGGREGATOR__GRACE_S", "value": 300}]},
     "at '/env/0/value': got number, want string"),
]


@pytest.mark.parametrize(("override", "named"), BAD_VALUES, ids=lambda v: str(v)[:40])
def test_a_wrong_value_fails_with_a_message(override: dict[str, Any], named: str,
                                            tmp_path: Path) -> None:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(HelmError) as caught:
        render([DEFAULT, path])
    assert named in str(caught.value)
