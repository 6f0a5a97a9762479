"""The recovery steps against a real RabbitMQ node: declare, observe, re-drive, plan + execute."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest
from op_tools import purge_topology

from newbank.messaging.topology import CASHBACK_PAYMENTS, TOPOLOGY
from newbank.runtime import RabbitMQ as RabbitMQNode
from newbank_operator.rabbitmq import ManagementClient, declare_topology, missing_topology
from newbank_operator.recovery import (
    REDRIVES_HEADER,
    RecoveryEdges,
    RecoveryMemory,
    RecoveryPolicy,
    execute,
    plan_recovery,
    redrive_dead_letters,
)

pytestmark = [pytest.mark.integration, pytest.mark.k8s]


@pytest.fixture
async def client(operator_rabbitmq: RabbitMQNode) -> AsyncIterator[ManagementClient]:
    async with ManagementClient(
        operator_rabbitmq.management_url, operator_rabbitmq.user, operator_rabbitmq.password
    ) as management:
        await declare_topology(management)
        for name in TOPOLOGY.all_queue_names():
            await management._request("DELETE", f"/queues/%2F/{name}/contents")
        yield management
    await purge_topology(operator_rabbitmq.management_url, operator_rabbitmq.user, operator_rabbitmq.password)


async def wait_for(predicate, timeout_s: float = 15.0, interval_s: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval_s)


async def publish_event(client: ManagementClient, routing_key: str, event_id: str) -> None:
    body = json.dumps({"id": event_id, "type": routing_key}).encode()
    properties = {"delivery_mode": 2, "message_id": event_id, "type": routing_key, "headers": {}}
    assert await client.publish(TOPOLOGY.exchange, routing_key, base64.b64encode(body).decode(), properties)


async def dead_letter_head(client: ManagementClient, queue: str, count: int) -> None:
    """Reject without requeue: the broker dead-letters through the queue's DLX, with x-death."""
    body = {"count": count, "ackmode": "reject_requeue_false", "encoding": "auto"}
    await client._request("POST", f"/queues/%2F/{queue}/get", body)


async def test_declared_topology_is_complete_with_quorum_arguments(client: ManagementClient) -> None:
    observed = await client.observe()
    assert observed.reachable
    assert missing_topology(observed) == []
    info = await client._request("GET", f"/queues/%2F/{CASHBACK_PAYMENTS.name}")
    assert info["type"] == "quorum"
    assert info["arguments"] == CASHBACK_PAYMENTS.arguments()
    retry = await client._request("GET", f"/queues/%2F/{CASHBACK_PAYMENTS.retry_queue}")
    assert retry["arguments"] == CASHBACK_PAYMENTS.retry_arguments()


async def test_deleted_queue_is_planned_and_redeclared(client: ManagementClient) -> None:
    await client.delete_queue(CASHBACK_PAYMENTS.name)
    observed = await client.observe()
    assert CASHBACK_PAYMENTS.name in missing_topology(observed)
    flushed: list[str] = []

    async def flush() -> str:
        flushed.append("all")
        return "1 instance"

    actions, _ = plan_recovery(observed, RecoveryPolicy(), 0.0, RecoveryMemory(True))
    outcomes = await execute(actions, RecoveryEdges(client, flush), RecoveryPolicy())
    assert all(o.ok for o in outcomes) and len(outcomes) == 2 + len(TOPOLOGY.queues)
    assert flushed == ["all"]
    assert missing_topology(await client.observe()) == []
    # The binding is back: an event reaches the queue again.
    await publish_event(client, "payment.completed", "after-redeclare")
    assert await wait_for(lambda: _ready(client, CASHBACK_PAYMENTS.name, 1))


async def _ready(client: ManagementClient, queue: str, expected: int) -> bool:
    """Count by looking (get + requeue): the management statistics lag by seconds."""
    body = {"count": 100, "ackmode": "ack_requeue_true", "encoding": "auto"}
    return len(await client._request("POST", f"/queues/%2F/{queue}/get", body)) == expected


async def test_redrive_returns_dead_letters_with_original_key_until_cap(client: ManagementClient) -> None:
    queue, dlq = CASHBACK_PAYMENTS.name, CASHBACK_PAYMENTS.dead_letter_queue
    await publish_event(client, "payment.refunded", "e-1")
    assert await wait_for(lambda: _ready(client, queue, 1))
    for attempt in range(1, 3):
        await dead_letter_head(client, queue, 1)
        assert await wait_for(lambda: _ready(client, dlq, 1))
        result = await redrive_dead_letters(client, CASHBACK_PAYMENTS, max_redrives=2, count=100)
        assert (result.redriven, result.parked) == (1, 0)
        assert await wait_for(lambda: _ready(client, queue, 1))
        messages = await client._request(
            "POST", f"/queues/%2F/{queue}/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
        )
        headers = messages[0]["properties"]["headers"]
        assert messages[0]["routing_key"] == "payment.refunded"
        assert headers[REDRIVES_HEADER] == attempt
        assert "x-death" not in headers
    # The cap is reached: the third dead-lettering stays in the DLQ.
    await dead_letter_head(client, queue, 1)
    assert await wait_for(lambda: _ready(client, dlq, 1))
    result = await redrive_dead_letters(client, CASHBACK_PAYMENTS, max_redrives=2, count=100)
    assert (result.redriven, result.parked) == (0, 1)
    assert await wait_for(lambda: _ready(client, dlq, 1))
    assert await _ready(client, queue, 0)


async def test_backlog_without_consumers_restarts_after_grace(client: ManagementClient) -> None:
    await publish_event(client, "payment.completed", "e-2")

    async def stats_show_backlog() -> bool:  # what the plan sees: the management statistics
        return (await client.queues())[CASHBACK_PAYMENTS.name].ready == 1

    assert await wait_for(stats_show_backlog, timeout_s=30)
    restarted: list[str] = []

    async def restart(service: str) -> str:
        restarted.append(service)
        return "rollout restarted"

    async def flush() -> str:
        return ""

    policy = RecoveryPolicy(zero_consumer_grace_s=1.0)
    memory = RecoveryMemory(True)
    edges = RecoveryEdges(client, flush, restart)
    for now in (0.0, 0.5, 1.5):
        actions, memory = plan_recovery(await client.observe(), policy, now, memory)
        await execute(actions, edges, policy)
    assert restarted == ["cashback"]


async def test_outage_then_return_triggers_recovery(client: ManagementClient, operator_rabbitmq: RabbitMQNode) -> None:
    memory = RecoveryMemory(True)
    operator_rabbitmq.stop()
    try:
        observed = await client.observe()
        assert not observed.reachable and observed.error
        actions, memory = plan_recovery(observed, RecoveryPolicy(), 0.0, memory)
        assert actions == [] and memory.broker_was_reachable is False
    finally:
        operator_rabbitmq.start()
    observed = await client.observe()
    actions, memory = plan_recovery(observed, RecoveryPolicy(), 1.0, memory)
    assert [a.kind for a in actions][:2] == ["redeclare-topology", "flush-outboxes"]
    outcomes = await execute(actions, RecoveryEdges(client, _no_flush), RecoveryPolicy())
    assert all(o.ok for o in outcomes), outcomes
    assert (await client.observe()).reachable


async def _no_flush() -> str:
    return "no instances"
