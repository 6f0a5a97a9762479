"""The kopf handlers, run by real kopf against kmock's API emulator and a real metrics endpoint."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import kmock
import kopf
import pytest
from op_load_metrics import LoadMetricsServer
from op_tools import purge_topology

from newbank_operator import handlers  # noqa: F401 - registers the handlers with kopf

pytestmark = [pytest.mark.k8s]

NS = "bank"


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1", "uid": f"uid-{name}"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {"replicas": replicas},
    }


def platform(metrics_urls: list[str], **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "newbank.io/v1alpha1",
        "kind": "CashbackPlatform",
        "metadata": {"name": "newbank", "namespace": NS},
        "spec": {
            "transactionService": {"deployment": "newbank-transactions", "metricsUrls": metrics_urls},
            "scaling": {
                "minReplicas": 2,
                "maxReplicas": 10,
                "syncPeriodSeconds": 1,
                "targets": {"requestsPerSecondPerReplica": 50, "inFlightPerReplica": 0},
                "scaleDown": {"stabilizationWindowSeconds": 2},
                **scaling,
            },
            "queues": [{"name": "cashback.payment-events", "consumerDeployment": "newbank-cashback"}],
            # Nothing listens there: the broker is observed as unavailable.
            "rabbitmq": {"managementUrl": "http://127.0.0.1:9"},
        },
    }


@pytest.fixture
async def operator_on(kube_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    emulator = kube_emulator
    for resource, kind, subresources in [
        ("newbank.io/v1alpha1/cashbackplatforms", "CashbackPlatform", {"status"}),
        ("apps/v1/deployments", "Deployment", {"scale"}),
        ("v1/pods", "Pod", set()),
        ("v1/secrets", "Secret", set()),
        ("v1/events", "Event", set()),
        # kopf's backbone waits for these to be discoverable even with scanning disabled.
        ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", set()),
        ("v1/namespaces", "Namespace", set()),
    ]:
        emulator.resources[resource] = kmock.ResourceInfo(
            namespaced=True, kind=kind, verbs={"get", "list", "watch", "create", "patch"}, subresources=subresources
        )
    emulator.objects["apps/v1/deployments", NS, "newbank-transactions"] = deployment("newbank-transactions", 2)
    emulator.objects["apps/v1/deployments", NS, "newbank-cashback"] = deployment("newbank-cashback", 1)
    secret = {k: base64.b64encode(v.encode()).decode() for k, v in {"username": "u", "password": "p"}.items()}
    emulator.objects["v1/secrets", NS, "newbank-rabbitmq-default-user"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "newbank-rabbitmq-default-user", "namespace": NS},
        "data": secret,
    }
    monkeypatch.setenv("NEWBANK_OPERATOR_API_SERVER", str(emulator.url).rstrip("/"))
    monkeypatch.setenv("NEWBANK_OPERATOR_API_INSECURE", "true")
    monkeypatch.setenv("NEWBANK_OPERATOR_PEERING_ENABLED", "false")

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    # kopf cancels every task of its event loop when it stops: give it a loop (thread) of its own.
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(
                registry=kopf.get_default_registry(),
                settings=settings,
                namespaces=[NS],
                standalone=True,
                stop_flag=stop,
                ready_flag=ready,
            )
        ),
        daemon=True,
    )
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 15)
        yield emulator
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "kopf did not stop within 30 s"


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.2)
    return False


def replicas(emulator: Any, name: str) -> int:
    return int(emulator.objects["apps/v1/deployments", NS, name]["spec"]["replicas"])


def platform_status(emulator: Any) -> dict[str, Any]:
    return emulator.objects["newbank.io/v1alpha1/cashbackplatforms", NS, "newbank"].raw.get("status") or {}


def event_reasons(emulator: Any) -> set[str]:
    return {obj.raw.get("reason") for key, obj in emulator.objects.items() if key[0] == "v1/events" and not obj.deleted}


async def create(emulator: Any, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=str(emulator.url)) as client:
        response = await client.post(f"/apis/newbank.io/v1alpha1/namespaces/{NS}/cashbackplatforms", json=body)
        response.raise_for_status()


async def test_daemon_scales_up_on_request_rate_and_reports(operator_on: Any, load_metrics: LoadMetricsServer) -> None:
    emulator = operator_on
    load_metrics.instances = 2
    load_metrics.load_rps = 300  # 150 per replica against a target of 50: x3
    await create(emulator, platform([load_metrics.url(0), load_metrics.url(1)]))

    assert await eventually(lambda: replicas(emulator, "newbank-transactions") == 6), platform_status(emulator)
    assert await eventually(lambda: platform_status(emulator).get("replicas", {}).get("desired") == 6)
    status = platform_status(emulator)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BrokerAvailable"]["status"] == "False"
    assert conditions["QueuesHealthy"]["status"] == "Unknown"
    assert status["broker"] == "Unavailable"
    assert status["metrics"]["instances"] == 2
    assert status["lastAction"].startswith("scaled newbank-transactions 2->6")
    # The consumer Deployment is not touched while its queue cannot be observed.
    assert replicas(emulator, "newbank-cashback") == 1
    assert await eventually(lambda: {"Accepted", "Scaled", "BrokerUnavailable"} <= event_reasons(emulator)), (
        event_reasons(emulator)
    )


async def test_daemon_scales_down_to_min_under_low_load(operator_on: Any, load_metrics: LoadMetricsServer) -> None:
    emulator = operator_on
    emulator.objects["apps/v1/deployments", NS, "newbank-transactions"]["spec"] = {"replicas": 5}
    load_metrics.instances = 5
    load_metrics.load_rps = 10  # far below target: down to min 2, one step at a time after the window
    await create(emulator, platform([load_metrics.url(i) for i in range(5)]))
    assert await eventually(lambda: replicas(emulator, "newbank-transactions") == 2, timeout_s=30)
    conditions = {c["type"]: c for c in platform_status(emulator)["conditions"]}
    assert conditions["ScalingActive"]["status"] == "True"


@pytest.mark.integration
async def test_stalled_queue_gets_a_rollout_restart_of_its_consumers(
    operator_on: Any, load_metrics: LoadMetricsServer, rabbitmq: Any
) -> None:
    """A backlog with zero consumers past the grace period: the consumer Deployment is restarted."""
    from newbank.messaging.topology import CASHBACK_PAYMENTS, TOPOLOGY
    from newbank_operator.rabbitmq import ManagementClient, declare_topology

    emulator = operator_on
    secret = {"username": rabbitmq.user, "password": rabbitmq.password}
    emulator.objects["v1/secrets", NS, "newbank-rabbitmq-default-user"]["data"] = {
        k: base64.b64encode(v.encode()).decode() for k, v in secret.items()
    }
    async with ManagementClient(rabbitmq.management_url, rabbitmq.user, rabbitmq.password) as client:
        await declare_topology(client)
        payload = base64.b64encode(b'{"id": "stalled"}').decode()
        props = {"delivery_mode": 2, "type": "payment.completed", "headers": {}}
        assert await client.publish(TOPOLOGY.exchange, "payment.completed", payload, props)

    body = platform([load_metrics.url(0)])
    body["spec"]["rabbitmq"] = {"managementUrl": rabbitmq.management_url}
    body["spec"]["recovery"] = {"zeroConsumerGraceSeconds": 5}
    body["spec"]["queues"] = [{"name": CASHBACK_PAYMENTS.name}]
    await create(emulator, body)

    def restarted_at() -> str | None:
        template = emulator.objects["apps/v1/deployments", NS, "newbank-cashback"].raw["spec"].get("template", {})
        return (template.get("metadata", {}).get("annotations") or {}).get("kubectl.kubernetes.io/restartedAt")

    try:
        assert await eventually(lambda: restarted_at() is not None, timeout_s=40), platform_status(emulator)
    finally:
        await purge_topology(rabbitmq.management_url, rabbitmq.user, rabbitmq.password)
    assert await eventually(lambda: "QueueRecovery" in event_reasons(emulator))
    assert await eventually(
        lambda: any(
            "restarted cashback consumers" in a
            for a in platform_status(emulator).get("lastRecovery", {}).get("actions", [])
        )
    )
