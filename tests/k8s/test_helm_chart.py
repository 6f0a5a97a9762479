"""The Helm chart: lint --strict, render over several value sets, validate every object, read back."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from newbank.runtime.instances import UVICORN_FLAGS

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "newbank"

pytestmark = [pytest.mark.k8s]

# name -> extra helm arguments
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "data-services-and-monitoring": [
        "--set",
        "postgres.cloudnativepg.enabled=true",
        "--set",
        "rabbitmq.cluster.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ],
    "minimal": [
        "--set",
        "ingress.enabled=false",
        "--set",
        "networkPolicy.enabled=false",
        "--set",
        "operator.enabled=false",
        "--set",
        "partners.enabled=false",
    ],
    "external-endpoints-tls": [
        "--set",
        "existingSecret=prod-secrets",
        "--set",
        "ingress.className=nginx",
        "--set",
        "ingress.tls[0].secretName=newbank-tls",
        "--set",
        "ingress.tls[0].hosts[0]=newbank.example.com",
        "--set",
        "rabbitmq.managementUrl=https://rabbit.example.com:15671",
        "--set",
        "rabbitmq.credentialsSecret=rabbit-admin",
        "--set",
        "operator.peering=false",
    ],
    "extra-env": [
        "--set-string",
        "extraEnv[0].name=NEWBANK_FAST_PATHS",
        "--set-string",
        "extraEnv[0].value=false",
        "--set-string",
        "transactions.extraEnv[0].name=NEWBANK_LOG_LEVEL",
        "--set-string",
        "transactions.extraEnv[0].valueFrom.configMapKeyRef.name=newbank-tuning",
        "--set-string",
        "transactions.extraEnv[0].valueFrom.configMapKeyRef.key=log-level",
        "--set",
        "gracefulShutdownSeconds=45",
    ],
}
CUSTOM_KINDS = {"CashbackPlatform", "KopfPeering", "Cluster", "RabbitmqCluster", "ServiceMonitor"}


def render(helm: str, *args: str, kube_version: str = "1.30.0") -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "newbank", str(CHART), "--namespace", "bank", "--kube-version", kube_version, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def crd() -> dict[str, Any]:
    return yaml.safe_load((REPO / "k8s" / "crd.yaml").read_text())


def crd_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict(helm: str, value_set: str) -> None:
    args = [a for a in VALUE_SETS[value_set] if not a.startswith(("--api-versions", "monitoring."))]
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid_for_kubernetes_1_30(helm: str, value_set: str) -> None:
    objects = render(helm, *VALUE_SETS[value_set])
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, "1.30", strict=True)
    for platform in by_kind(objects, "CashbackPlatform").values():
        jsonschema.validate(platform, crd_schema())


def test_old_kubernetes_gets_the_api_versions_it_serves(helm: str) -> None:
    old = render(helm, kube_version="1.20.2")
    assert {o["apiVersion"] for o in old if o["kind"] == "PodDisruptionBudget"} == {"policy/v1beta1"}
    new = render(helm)
    assert {o["apiVersion"] for o in new if o["kind"] == "PodDisruptionBudget"} == {"policy/v1"}
    assert {o["apiVersion"] for o in new if o["kind"] == "Ingress"} == {"networking.k8s.io/v1"}


def test_resources_mirror_the_load_test_parameters(helm: str) -> None:
    deployments = by_kind(render(helm), "Deployment")
    expected = {
        "newbank-accounts": ("300m", "200Mi"),
        "newbank-transactions": ("500m", "300Mi"),
        "newbank-partners": ("300m", "200Mi"),
        "newbank-cashback": ("300m", "200Mi"),
    }
    for name, (cpu, memory) in expected.items():
        resources = deployments[name]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": cpu, "memory": memory}, name


def test_pods_are_non_root_read_only_without_capabilities_and_probed(helm: str) -> None:
    for name, deployment in by_kind(render(helm), "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "livenessProbe" in container, name
        if name != "newbank-operator":
            container = pod["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_ingress_routes_each_prefix_to_its_owner(helm: str) -> None:
    ingress = next(iter(by_kind(render(helm), "Ingress").values()))
    routes = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert routes == {
        "/api/v1/customers": "newbank-accounts",
        "/api/v1/accounts": "newbank-accounts",
        "/api/v1/fx-rates": "newbank-accounts",
        "/api/v1/merchants": "newbank-accounts",
        "/api/v1/payments": "newbank-transactions",
        "/api/v1/partners": "newbank-partners",
        "/api/v1/cashback": "newbank-cashback",
    }


def test_secrets_by_reference_and_data_services(helm: str) -> None:
    objects = render(helm, *VALUE_SETS["data-services-and-monitoring"])
    clusters = by_kind(objects, "Cluster")
    assert set(clusters) == {"newbank-bank", "newbank-cashback"}
    for cluster in clusters.values():
        assert cluster["spec"]["instances"] == 2 and cluster["spec"]["minSyncReplicas"] == 1
        assert cluster["spec"]["postgresql"]["parameters"] == {"wal_compression": "lz4"}  # as the local runtime
    assert by_kind(objects, "RabbitmqCluster")["newbank-rabbitmq"]["spec"]["replicas"] == 3
    assert "newbank" in by_kind(objects, "ServiceMonitor")
    assert not by_kind(objects, "Secret"), "the chart must not create Secrets"
    env = {
        e["name"]: e
        for e in by_kind(objects, "Deployment")["newbank-cashback"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "newbank-cashback-rw:5432/cashback" in env["NEWBANK_DATABASE_URL"]["value"]


def test_operator_role_is_least_privilege_and_matches_k8s_manifests(helm: str) -> None:
    objects = render(helm)
    role = by_kind(objects, "Role")["newbank-operator"]
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    manifests = [d for d in yaml.safe_load_all((REPO / "k8s" / "operator-rbac.yaml").read_text()) if d]
    static_role = next(d for d in manifests if d["kind"] == "Role")
    assert role["rules"] == static_role["rules"]
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert "delete" not in verbs and "*" not in verbs
    secrets = next(r for r in role["rules"] if r["resources"] == ["secrets"])
    assert secrets["resourceNames"] == ["newbank-rabbitmq-default-user"]


def test_crd_copies_are_identical_and_complete() -> None:
    assert (REPO / "k8s" / "crd.yaml").read_text() == (CHART / "crds" / "cashbackplatform.yaml").read_text()
    assert (REPO / "k8s" / "kopfpeering-crd.yaml").read_text() == (CHART / "crds" / "kopfpeering.yaml").read_text()
    definition = crd()
    kubernetes_validate.validate(definition, "1.30", strict=True)
    version = definition["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Replicas", "Desired", "Backlog", "Broker", "Last-Action"} <= columns


def test_kustomize_base_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in (REPO / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    for name in present:
        for obj in yaml.safe_load_all((REPO / "k8s" / name).read_text()):
            if obj and obj["kind"] not in CUSTOM_KINDS:
                kubernetes_validate.validate(obj, "1.30", strict=True)


def _default(schema: dict[str, Any], value: Any) -> Any:
    """Apply the CRD's structural defaults like the API server does."""
    if isinstance(value, dict) and schema.get("type") == "object":
        result = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in result and "default" in sub:
                result[key] = sub["default"]
            if key in result:
                result[key] = _default(sub, result[key])
        return result
    if isinstance(value, list) and "items" in schema:
        return [_default(schema["items"], item) for item in value]
    return value


@pytest.mark.parametrize("path", [REPO / "k8s" / "samples" / "cashbackplatform.yaml"])
def test_sample_is_valid_against_the_crd_schema(path: Path) -> None:
    sample = yaml.safe_load(path.read_text())
    jsonschema.validate(sample, crd_schema())
    jsonschema.validate(_default(crd_schema(), sample), crd_schema())


def test_crd_defaults_match_the_operators_defaults() -> None:
    from newbank_operator.spec import parse_spec

    defaulted = _default(crd_schema(), {"spec": {}})
    jsonschema.validate(defaulted, crd_schema())
    assert parse_spec(defaulted["spec"]) == parse_spec({})


@pytest.mark.parametrize(
    "bad_spec",
    [
        {"scaling": {"minReplicas": 0}},
        {"scaling": {"maxReplicas": 1000}},
        {"scaling": {"tolerance": 0.9}},
        {"queues": [{"name": "no-such-queue"}]},
        {"recovery": {"zeroConsumerGraceSeconds": 1}},
        {"rabbitmq": {"managementUrl": "ftp://x"}},
    ],
)
def test_crd_rejects_out_of_bounds_specs(bad_spec: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": bad_spec}, crd_schema())


def test_dockerfile_builds_one_non_root_image_from_python_3_11_slim() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    assert all(line.split()[1].startswith("python:3.11-slim") for line in lines if line.startswith("FROM"))
    assert "USER 10001:10001" in lines
    assert any(line.startswith("RUN pip install") and line.endswith(" .") for line in lines)
    # The chart's pods run as that user.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001


def test_kustomize_builds_the_operator_base() -> None:
    import shutil

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found (it has kustomize built in)")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "k8s")], check=True, capture_output=True, text=True)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout) if d)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Deployment",
            "KopfPeering",
        ]
    )


def test_operator_managed_deployments_leave_replicas_to_the_operator(helm: str) -> None:
    managed = by_kind(render(helm), "Deployment")
    assert "replicas" not in managed["newbank-transactions"]["spec"]
    assert "replicas" not in managed["newbank-cashback"]["spec"]
    assert managed["newbank-accounts"]["spec"]["replicas"] == 2
    platform = by_kind(render(helm), "CashbackPlatform")["newbank"]["spec"]
    assert platform["scaling"]["minReplicas"] == 2 and platform["queues"][0]["minReplicas"] == 2
    unmanaged = by_kind(render(helm, "--set", "operator.enabled=false"), "Deployment")
    assert unmanaged["newbank-transactions"]["spec"]["replicas"] == 2


def _service_containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: deployment["spec"]["template"]["spec"]["containers"][0]
        for name, deployment in by_kind(objects, "Deployment").items()
        if name != "newbank-operator"
    }


def test_extra_env_goes_to_every_service_after_the_charts_own(helm: str) -> None:
    containers = _service_containers(render(helm, *VALUE_SETS["extra-env"]))
    assert sorted(containers) == ["newbank-accounts", "newbank-cashback", "newbank-partners", "newbank-transactions"]
    for name, container in containers.items():
        names = [env["name"] for env in container["env"]]
        assert names[0] == "NEWBANK_SERVICE", name
        extra = container["env"][names.index("PYTHONDONTWRITEBYTECODE") + 1 :]
        expected = [{"name": "NEWBANK_FAST_PATHS", "value": "false"}]
        if name == "newbank-transactions":
            expected.append(
                {
                    "name": "NEWBANK_LOG_LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": "newbank-tuning", "key": "log-level"}},
                }
            )
        assert extra == expected, name
    by_default = _service_containers(render(helm))
    assert all(c["env"][-1]["name"] == "PYTHONDONTWRITEBYTECODE" for c in by_default.values())


def test_extra_env_values_must_be_strings(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "newbank", str(CHART), "--set", "extraEnv[0].name=X", "--set", "extraEnv[0].value=false"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "extraEnv" in result.stderr, result.stderr


def test_services_run_as_the_load_test_runs_them(helm: str) -> None:
    """The local runtime's flags (the load-test figures are its: no access log), but for the grace
    period, which the chart sets so that the shutdown ends before the kubelet's SIGKILL."""
    local = [flag for flag in UVICORN_FLAGS if flag.startswith("--")]
    assert "--no-access-log" in local
    for value_set, grace in (("defaults", 20), ("extra-env", 45)):
        objects = render(helm, *VALUE_SETS[value_set])
        for name, container in _service_containers(objects).items():
            args = container["args"]
            assert all(flag in args for flag in local), (name, local, args)
            assert int(args[args.index("--timeout-graceful-shutdown") + 1]) == grace, name
            pod = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] == grace + 10, name
