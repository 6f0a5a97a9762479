"""Cashback while the infrastructure fails under it: the PostgreSQL primary is killed (Patroni fails
over to the synchronous standby) and the broker restarts, both while payments flow. Every payment is
credited exactly once, nothing is dead-lettered (transient failures are retried, not poison), and every
cashback event leaves the outbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from bank_events import open_account, payment_completed, register_merchant, set_offer, wait_balance
from cashback_harness import Env, eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]

DLQ = "cashback.payment-events.dlq"


async def _publish_with_retry(env: Env, event_type: str, data: dict[str, Any], event_id: uuid.UUID) -> None:
    """The test plays the bank's relay: it keeps trying while the broker is away (same event id)."""
    for _ in range(300):
        try:
            await env.bus.publish(event_type, data, event_id=event_id)
            return
        except Exception:
            env.bus.channel = None
            await asyncio.sleep(0.2)
    raise AssertionError("could not publish for 60 s")


async def _depth(env: Env, queue: str) -> int:
    return (await asyncio.to_thread(env.rabbitmq.queue_depths)).get(queue, 0)


async def _all_entries_once(env: Env, payments: list[dict[str, Any]]) -> None:
    async def counted() -> tuple[int, int] | None:
        try:
            row = await env.pool.fetchrow(
                "SELECT count(*) AS entries, count(DISTINCT payment_id) AS payments,"
                " (SELECT count(*) FROM outbox_event WHERE event_type LIKE 'cashback.%' AND published_at IS NULL"
                "   AND envelope -> 'data' ->> 'payment_id' = ANY($1::text[])) AS unpublished"
                " FROM cashback_entry WHERE payment_id = ANY($1::text[]::uuid[])",
                [p["payment_id"] for p in payments],
            )
        except Exception:
            return None
        return (row["entries"], row["payments"]) if row["unpublished"] == 0 else None

    assert await eventually(counted, timeout_s=60, every_s=0.5) == (len(payments), len(payments))


async def test_primary_killed_while_payments_flow(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 100)
    await wait_balance(cashback, customer, 0)
    await asyncio.to_thread(env.pg.wait_sync, 60)
    dlq_before = await _depth(env, DLQ)
    payments = [payment_completed(customer, merchant, 1_000 + 7 * i) for i in range(120)]
    expected = sum(p["debited_amount"] // 100 for p in payments)

    async def publish_all() -> None:
        for payment in payments:
            await _publish_with_retry(env, "payment.completed", payment, uuid.uuid4())
            await asyncio.sleep(0.04)

    publisher = asyncio.create_task(publish_all())
    await asyncio.sleep(1.5)
    old_primary = await asyncio.to_thread(env.pg.primary)
    await asyncio.to_thread(env.pg.kill_node, old_primary)
    try:
        await publisher
        new_primary = await asyncio.to_thread(env.pg.primary, 90)
        assert new_primary.name != old_primary.name
        await wait_balance(cashback, customer, expected, timeout_s=120)
        await _all_entries_once(env, payments)
        assert await _depth(env, DLQ) == dlq_before
    finally:
        # Back to a primary + synchronous standby for the tests that follow.
        await asyncio.to_thread(env.pg.start_node, old_primary)
        await asyncio.to_thread(env.pg.wait_sync, 120)


async def test_broker_restart_while_payments_flow(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 250)
    await wait_balance(cashback, customer, 0)
    dlq_before = await _depth(env, DLQ)
    payments = [payment_completed(customer, merchant, 2_000 + 11 * i) for i in range(80)]
    expected = sum(p["debited_amount"] * 250 // 10_000 for p in payments)

    for payment in payments[:40]:
        await _publish_with_retry(env, "payment.completed", payment, uuid.uuid4())
    await asyncio.to_thread(env.rabbitmq.stop)  # clean stop: unacked deliveries go back to the queue
    await asyncio.to_thread(env.rabbitmq.start)  # same data folder: durable queues, persistent messages
    for payment in payments[40:]:
        await _publish_with_retry(env, "payment.completed", payment, uuid.uuid4())

    await wait_balance(cashback, customer, expected, timeout_s=90)
    await _all_entries_once(env, payments)
    assert await _depth(env, DLQ) == dlq_before
