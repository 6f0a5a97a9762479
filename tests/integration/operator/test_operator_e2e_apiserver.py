"""End to end on a real API server: the operator as its ServiceAccount scales a Deployment.

kube-apiserver 1.20.2 (built from Debian's source package by k8s/tools/build-kube-apiserver.sh) on
Debian's etcd, token auth + RBAC. The CRDs, the chart's operator RBAC and KopfPeering are applied;
the real operator process runs with a TokenRequest token of its ServiceAccount (so its Role must
suffice), reads metrics from a real HTTP endpoint and a real RabbitMQ, and sets the Deployment's
scale subresource and the CashbackPlatform's status.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from op_kube_apiserver import KubeApiServer, free_port, unavailable
from op_load_metrics import LoadMetricsServer
from op_tools import find_helm

from newbank.messaging.topology import CASHBACK_PAYMENTS
from newbank.runtime import RabbitMQ
from newbank_operator.rabbitmq import ManagementClient, declare_topology

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.slow]

REPO = Path(__file__).parents[3]
NS = "bank"
KUBECTL = os.environ.get("NEWBANK_KUBECTL", "kubectl")


@pytest.fixture(scope="module")
def apiserver() -> Iterator[KubeApiServer]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = KubeApiServer(Path(tempfile.mkdtemp(prefix="newbank-kube-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def kubectl(server: KubeApiServer, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def chart_objects(kube_version: str, namespace: str) -> list[dict[str, Any]] | None:
    """The chart rendered for this API server's version, or None without helm."""
    helm = find_helm()
    if helm is None:
        return None
    out = subprocess.run(
        [
            helm,
            "template",
            "newbank",
            str(REPO / "charts" / "newbank"),
            "--namespace",
            namespace,
            "--kube-version",
            kube_version,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def deployment(namespace: str, name: str, replicas: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "newbank", "app.kubernetes.io/component": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "newbank:e2e"}]},
            },
        },
    }


def install(apiserver: KubeApiServer, admin: Path, rabbitmq: RabbitMQ, namespace: str) -> str:
    """CRDs, the namespace, the chart's operator RBAC + KopfPeering, Deployments, the broker Secret.

    Returns a TokenRequest token of the operator's ServiceAccount.
    """
    kubectl(
        apiserver,
        admin,
        "apply",
        "-f",
        str(REPO / "k8s" / "crd.yaml"),
        "-f",
        str(REPO / "k8s" / "kopfpeering-crd.yaml"),
    )
    kubectl(
        apiserver,
        admin,
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/cashbackplatforms.newbank.io",
        "crd/kopfpeerings.kopf.dev",
    )
    kubectl(apiserver, admin, "create", "namespace", namespace)
    rendered = chart_objects("1.20.2", namespace)
    if rendered is not None:
        rbac = [
            o
            for o in rendered
            if o["kind"] in ("ServiceAccount", "Role", "RoleBinding", "KopfPeering")
            and o["metadata"]["name"] == "newbank-operator"
        ]
        assert len(rbac) == 4
        kubectl(apiserver, admin, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(rbac))
        # Everything else the chart renders for 1.20 is accepted by a 1.20 server.
        rest = [o for o in rendered if o not in rbac]
        kubectl(
            apiserver, admin, "apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rest)
        )
    else:
        kubectl(
            apiserver,
            admin,
            "apply",
            "-n",
            namespace,
            "-f",
            str(REPO / "k8s" / "operator-rbac.yaml"),
            "-f",
            str(REPO / "k8s" / "peering.yaml"),
        )
    with apiserver.client() as api:
        for body in (deployment(namespace, "newbank-transactions", 2), deployment(namespace, "newbank-cashback", 1)):
            api.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=body).raise_for_status()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "newbank-rabbitmq-default-user"},
            "stringData": {"username": rabbitmq.user, "password": rabbitmq.password},
        }
        api.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret).raise_for_status()
    asyncio.run(_declare(rabbitmq))
    return apiserver.service_account_token(namespace, "newbank-operator")


def start_operator(
    apiserver: KubeApiServer, token: str, namespace: str, log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """The real operator process (``python -m newbank_operator``) as the ServiceAccount."""
    return subprocess.Popen(
        [sys.executable, "-m", "newbank_operator"],
        env={
            **os.environ,
            "NEWBANK_OPERATOR_API_SERVER": apiserver.url,
            "NEWBANK_OPERATOR_API_TOKEN": token,
            "NEWBANK_OPERATOR_API_INSECURE": "true",
            "NEWBANK_OPERATOR_NAMESPACE": namespace,
            "NEWBANK_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
            **env,
        },
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_operator(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


def platform(namespace: str, metrics_urls: list[str], rabbitmq: RabbitMQ, max_replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "newbank.io/v1alpha1",
            "kind": "CashbackPlatform",
            "metadata": {"name": "newbank", "namespace": namespace},
            "spec": {
                "transactionService": {"deployment": "newbank-transactions", "metricsUrls": metrics_urls},
                "scaling": {
                    "minReplicas": 2,
                    "maxReplicas": max_replicas,
                    "syncPeriodSeconds": 1,
                    "targets": {"requestsPerSecondPerReplica": 50, "inFlightPerReplica": 0},
                },
                "queues": [{"name": CASHBACK_PAYMENTS.name, "consumerDeployment": "newbank-cashback"}],
                "rabbitmq": {"managementUrl": rabbitmq.management_url},
                "recovery": {"zeroConsumerGraceSeconds": 3600},
            },
        }
    )


def scale_of(apiserver: KubeApiServer, namespace: str, name: str = "newbank-transactions") -> int:
    with apiserver.client() as api:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
        return int(api.get(path).json()["spec"]["replicas"])


def platform_of(apiserver: KubeApiServer, namespace: str) -> dict[str, Any]:
    with apiserver.client() as api:
        return api.get(f"/apis/newbank.io/v1alpha1/namespaces/{namespace}/cashbackplatforms/newbank").json()


def test_operator_scales_and_recovers_on_a_real_api_server(
    apiserver: KubeApiServer, rabbitmq: RabbitMQ, tmp_path: Path
) -> None:
    admin = apiserver.kubeconfig(tmp_path / "admin.kubeconfig")
    token = install(apiserver, admin, rabbitmq, NS)
    load = LoadMetricsServer().start()
    # 150 rps per listed instance against 50: x3 -> 6, which is also maxReplicas (the listed URLs
    # stay two, so the per-replica rate does not fall as the Deployment grows).
    load.instances, load.load_rps = 2, 300
    log_path = tmp_path / "operator.log"
    operator = start_operator(apiserver, token, NS, log_path)
    try:
        kubectl(apiserver, admin, "apply", "-f", "-", stdin=platform(NS, [load.url(0), load.url(1)], rabbitmq, 6))
        try:
            wait_until(lambda: scale_of(apiserver, NS) == 6, 60, "the operator to scale newbank-transactions to 6")
        except AssertionError:
            seen = platform_of(apiserver, NS).get("status")
            raise AssertionError(f"{seen}\n{log_path.read_text()[-1500:]}") from None

        current = wait_until(
            lambda: (
                (s := platform_of(apiserver, NS).get("status", {})).get("replicas", {}).get("desired") == 6
                and s.get("broker") == "Available"
                and s
            ),
            30,
            "status",
        )
        conditions = {c["type"]: c["status"] for c in current["conditions"]}
        assert conditions["BrokerAvailable"] == "True" and conditions["ScalingActive"] == "True"
        # Server-side defaults of the CRD were applied.
        assert platform_of(apiserver, NS)["spec"]["scaling"]["scaleDown"]["stabilizationWindowSeconds"] == 300
        table = kubectl(apiserver, admin, "get", "cashbackplatforms", "-n", NS)
        assert "REPLICAS" in table and "LAST-ACTION" in table
        print("\n" + table)

        # Recovery: a queue of the topology disappears; the operator re-declares it and says so.
        asyncio.run(_delete_queue(rabbitmq))

        def recovered() -> bool:
            with apiserver.client() as api:
                events = api.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
            return any(e["reason"] == "QueueRecovery" and "re-declared" in e["message"] for e in events)

        wait_until(recovered, 30, "a QueueRecovery Event")
        with apiserver.client() as api:
            reasons = {e["reason"] for e in api.get(f"/api/v1/namespaces/{NS}/events").json()["items"]}
        assert {"Accepted", "Scaled", "QueueRecovery"} <= reasons
        wait_until(
            lambda: any(
                "re-declared" in a
                for a in platform_of(apiserver, NS)["status"].get("lastRecovery", {}).get("actions", [])
            ),
            10,
            "lastRecovery in the status",
        )
        log_text = log_path.read_text()
        # An HTTP 403 or a kopf "Forbidden" would mean the RBAC is short; a bare "403" may be part of a
        # timestamp or a port in the log, so look for the status line.
        refused = re.search(r"HTTP/1\.[01] 403|Forbidden", log_text)
        assert refused is None, log_text[max(0, refused.start() - 1500) : refused.end() + 500] if refused else ""
        assert "failed" not in log_text.replace("0 failed", ""), log_text[-3000:]
    finally:
        stop_operator(operator)
        load.stop()


def test_two_operator_replicas_never_act_at_once(apiserver: KubeApiServer, rabbitmq: RabbitMQ, tmp_path: Path) -> None:
    """kopf's peering: the higher priority acts, the other pauses, and takes over when it goes."""
    namespace = "peering"
    admin = apiserver.kubeconfig(tmp_path / "admin.kubeconfig")
    token = install(apiserver, admin, rabbitmq, namespace)
    load = LoadMetricsServer().start()
    load.instances, load.load_rps = 2, 300
    logs = {prio: tmp_path / f"operator-{prio}.log" for prio in ("10", "5")}
    operators = {
        prio: start_operator(
            apiserver,
            token,
            namespace,
            log,
            NEWBANK_OPERATOR_PEERING_PRIORITY=prio,
            NEWBANK_OPERATOR_PEERING_LIFETIME_S="6",
        )
        for prio, log in logs.items()
    }
    try:
        time.sleep(3)  # both announce themselves before there is anything to do
        kubectl(
            apiserver, admin, "apply", "-f", "-", stdin=platform(namespace, [load.url(0), load.url(1)], rabbitmq, 4)
        )
        wait_until(lambda: scale_of(apiserver, namespace) == 4, 60, "the active operator to scale to 4")
        scale_patch = f"PATCH {apiserver.url}/apis/apps/v1/namespaces/{namespace}/deployments/newbank-transactions"
        # The log line follows the response by a moment.
        wait_until(lambda: scale_patch in logs["10"].read_text(), 5, "the active operator's PATCH in its log")
        assert scale_patch not in logs["5"].read_text(), "the standby acted while the active one was alive"

        # The active one goes away; after its peering lifetime the standby resumes and acts.
        stop_operator(operators["10"])
        kubectl(
            apiserver,
            admin,
            "patch",
            "cashbackplatform",
            "newbank",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"scaling": {"maxReplicas": 5}}}),
        )
        wait_until(lambda: scale_of(apiserver, namespace) == 5, 60, "the standby to take over and scale to 5")
        wait_until(lambda: scale_patch in logs["5"].read_text(), 5, "the standby's PATCH in its log")
        assert "Resuming operations" in logs["5"].read_text()
    finally:
        for process in operators.values():
            stop_operator(process)
        load.stop()


async def _declare(rabbitmq: RabbitMQ) -> None:
    async with ManagementClient(rabbitmq.management_url, rabbitmq.user, rabbitmq.password) as client:
        await declare_topology(client)


async def _delete_queue(rabbitmq: RabbitMQ) -> None:
    async with ManagementClient(rabbitmq.management_url, rabbitmq.user, rabbitmq.password) as client:
        await client.delete_queue(CASHBACK_PAYMENTS.name)


def test_skip_reason_names_the_build_script() -> None:
    reason = unavailable()
    assert reason is None or "build-kube-apiserver.sh" in reason or "etcd" in reason or "openssl" in reason
