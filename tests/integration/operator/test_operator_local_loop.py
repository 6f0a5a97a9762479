"""The operator's local loop for real: a real RabbitMQ, a real metrics endpoint, an in-memory target.

The target is the runtime's interface (instance URLs, replica count), held in memory here instead
of HAProxy + processes; everything the loop talks to over the network is real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from op_load_metrics import LoadMetricsServer
from op_tools import purge_topology

from newbank.messaging.topology import CASHBACK_PAYMENTS, TOPOLOGY
from newbank.runtime import RabbitMQ, free_ports
from newbank_operator.local_loop import STATUS_FILE, run_local_operator
from newbank_operator.rabbitmq import ManagementClient, declare_topology, missing_topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 4.0
SPEC = {
    "scaling": {
        "minReplicas": 1,
        "maxReplicas": 6,
        "syncPeriodSeconds": 0.5,
        "targets": {"requestsPerSecondPerReplica": 50, "inFlightPerReplica": 0},
        "scaleDown": {"stabilizationWindowSeconds": WINDOW_S, "maxStepReplicas": 2},
    },
    "queues": [{"name": q.name} for q in TOPOLOGY.queues],
    "recovery": {"zeroConsumerGraceSeconds": 5},
}


class InMemoryTarget:
    """The runtime's scale target, kept in memory; instances are the metrics server's paths."""

    def __init__(self, load: LoadMetricsServer) -> None:
        self.load = load
        self.replicas = 1
        self.history: list[tuple[float, int]] = []
        self.restarts: list[str] = []

    def instance_urls(self) -> list[str]:
        return [self.load.url(i) for i in range(self.replicas)]

    def current_replicas(self) -> int:
        return self.replicas

    def set_replicas(self, n: int) -> None:
        self.replicas = n
        self.load.instances = n
        self.history.append((time.monotonic(), n))

    async def restart_consumers(self, service: str) -> None:
        self.restarts.append(service)


@pytest.fixture(scope="module")
def rabbitmq(runtime_tmp: Path) -> Iterator[RabbitMQ]:
    """A broker of this module's own, instead of the session's.

    Other modules leave cashback consumers running on the session broker; one of them could take the
    outage test's event before it is dead-lettered. This module stops and restarts its broker, too.
    """
    broker = RabbitMQ(runtime_tmp / "rabbitmq-local-loop", *free_ports(4))
    try:
        broker.start(empty=True)
        yield broker
    finally:
        broker.stop(keep_epmd=False)


@pytest.fixture
def load() -> Any:
    server = LoadMetricsServer().start()
    yield server
    server.stop()


@pytest.fixture
async def loop_running(rabbitmq: RabbitMQ, load: LoadMetricsServer, tmp_path: Path) -> AsyncIterator[Any]:
    async with ManagementClient(rabbitmq.management_url, rabbitmq.user, rabbitmq.password) as client:
        await declare_topology(client)
    # The module's broker: start from empty queues whatever the test before left.
    await purge_topology(rabbitmq.management_url, rabbitmq.user, rabbitmq.password)
    target = InMemoryTarget(load)
    task = asyncio.create_task(
        run_local_operator(target, rabbitmq.management_url, rabbitmq.user, rabbitmq.password, tmp_path, spec=SPEC)
    )
    try:
        yield target, tmp_path
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await purge_topology(rabbitmq.management_url, rabbitmq.user, rabbitmq.password)


async def until(check: Callable[[], Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.25)
    return False


def status(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


async def test_scales_up_under_load_and_down_after_the_window(loop_running: Any, load: LoadMetricsServer) -> None:
    target, folder = loop_running
    load.load_rps = 250  # 5 replicas' worth at 50 rps each
    assert await until(lambda: target.replicas >= 5, 20), target.history
    assert status(folder)["replicas"]["desired"] >= 5
    peak = target.replicas

    load.load_rps = 0
    quiet_since = time.monotonic()
    assert await until(lambda: target.replicas == 1, 30), target.history
    first_down = next(t for t, n in target.history if n < peak)
    assert first_down - quiet_since >= WINDOW_S - 1.0, "scaled down before the stabilisation window"
    conditions = {c["type"]: c["status"] for c in status(folder)["conditions"]}
    assert conditions == {"BrokerAvailable": "True", "QueuesHealthy": "True", "ScalingActive": "True"}


async def test_recovers_topology_and_dead_letters_after_an_outage(
    loop_running: Any, rabbitmq: RabbitMQ, load: LoadMetricsServer
) -> None:
    target, folder = loop_running
    client = ManagementClient(rabbitmq.management_url, rabbitmq.user, rabbitmq.password)
    try:
        # A dead-lettered event waits in the DLQ (rejected by the broker, with x-death).
        payload = base64.b64encode(json.dumps({"id": "evt-1"}).encode()).decode()
        props = {"delivery_mode": 2, "message_id": "evt-1", "type": "payment.completed", "headers": {}}
        assert await client.publish(TOPOLOGY.exchange, "payment.completed", payload, props)
        await client._request(
            "POST",
            f"/queues/%2F/{CASHBACK_PAYMENTS.name}/get",
            {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"},
        )
        assert await until(lambda: status(folder).get("broker") == "Available", 10)
        flushes_before = load.flushes

        rabbitmq.stop()
        assert await until(lambda: status(folder).get("broker") == "Unavailable", 15)
        rabbitmq.start()

        async def redriven() -> bool:
            body = {"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"}
            got = await client._request("POST", f"/queues/%2F/{CASHBACK_PAYMENTS.name}/get", body)
            return any(m["properties"].get("message_id") == "evt-1" for m in got)

        assert await until(redriven, 20)
        assert await until(lambda: load.flushes > flushes_before, 10)
        assert await until(
            lambda: (
                status(folder).get("broker") == "Available"
                and any("re-declared topology" in a for a in status(folder).get("lastRecovery", {}).get("actions", []))
            ),
            10,
        )

        # Nobody consumes the re-driven event: after the grace period the consumers are restarted.
        assert await until(lambda: "cashback" in target.restarts, 30)

        # A queue that goes missing while the broker is up is declared again. (Deleting it right after
        # the restart instead would race the re-drive above and drop evt-1 with it.)
        await client.delete_queue(CASHBACK_PAYMENTS.name)

        async def recovered() -> bool:
            return not missing_topology(await client.observe())

        assert await until(recovered, 20)
    finally:
        await client.aclose()


async def test_drives_the_runtimes_own_scale_target(
    rabbitmq: RabbitMQ, load: LoadMetricsServer, tmp_path: Path
) -> None:
    """The contract with ``newbank up``: the runtime's LocalScaleTarget and its desired.json."""
    from types import SimpleNamespace

    from newbank.runtime.layout import Layout
    from newbank.runtime.scale_target import LocalScaleTarget, read_desired
    from newbank_operator.local_loop import ListsAllInstances, RestartsConsumers

    layout = Layout(home=tmp_path, ingress_port=0, ports={})

    def instances() -> list[SimpleNamespace]:  # the controller, converged at once
        count = read_desired(layout)["transactions"]
        load.instances = count
        return [SimpleNamespace(service="transactions", url=load.url(i), registered=True) for i in range(count)]

    target = LocalScaleTarget(layout, "transactions", instances)
    assert isinstance(target, RestartsConsumers) and isinstance(target, ListsAllInstances)
    load.load_rps = 200  # 100 per default instance against 50
    task = asyncio.create_task(
        run_local_operator(target, rabbitmq.management_url, rabbitmq.user, rabbitmq.password, tmp_path, spec=SPEC)
    )
    try:
        assert await until(lambda: read_desired(layout)["transactions"] >= 4, 20)
        assert await until(lambda: status(tmp_path).get("replicas", {}).get("desired", 0) >= 4, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
