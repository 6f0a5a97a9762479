"""Delivery guarantees of the cashback consumers: poison messages end in the DLQ with their reason
without blocking the queue; competing instances never credit a payment twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from typing import Any

import aio_pika
import httpx
import pytest
from bank_events import open_account, payment_completed, register_merchant, set_offer, wait_balance
from cashback_harness import Env, eventually, running, service_settings

from newbank.cashback.main import build_app as build_cashback
from newbank.messaging.consumer import ERROR_HEADER, RETRIES_HEADER

pytestmark = [pytest.mark.integration]


async def _dead_lettered(env: Env, queue_name: str, message_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Take the messages with these ids out of a DLQ (others are put back), with their headers."""
    found: dict[str, dict[str, Any]] = {}
    async with contextlib.AsyncExitStack() as stack:
        connection = await aio_pika.connect(env.amqp_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)

        async def collect() -> bool:
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if message.message_id in message_ids:
                    found[message.message_id] = dict(message.headers or {})
                    await message.ack()
                else:
                    await message.nack(requeue=True)
                    break
            return found.keys() == message_ids

        await eventually(collect, timeout_s=20, every_s=0.2)
    return found


async def test_poison_messages_go_to_the_dlq_with_a_reason(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 100)
    good = payment_completed(customer, merchant, 10_000)
    missing_field = {k: v for k, v in good.items() if k != "debited_amount"}
    bad_currency = {**payment_completed(customer, merchant, 10_000), "account_currency": "XYZ"}
    poison = {
        await env.bus.publish("payment.completed", missing_field): "debited_amount",
        await env.bus.publish("payment.completed", bad_currency): "account_currency",
        await env.bus.publish("payment.completed", good, version=2): "unknown schema version",
        await env.bus.publish("payment.completed", {}, raw=b"\x00 not json"): "MalformedEvent",
        await env.bus.publish("payment.refunded", {"payment_id": "nope"}): "payment.refunded payload",
    }
    # The queue is not blocked: the good payment behind the poison is credited at once.
    await env.bus.publish("payment.completed", good)
    await wait_balance(cashback, customer, 100, timeout_s=3)

    dead = await _dead_lettered(env, "cashback.payment-events.dlq", {str(i) for i in poison})
    for event_id, reason in poison.items():
        headers = dead[str(event_id)]
        assert reason in str(headers[ERROR_HEADER]), headers
        assert int(headers[RETRIES_HEADER]) == 2  # retried with back-off first (max_retries=2 here)
    assert (
        await env.pool.fetchval("SELECT count(*) FROM inbox_event WHERE event_id = ANY($1::uuid[])", list(poison)) == 0
    )


async def test_unknown_redemption_is_dead_lettered(env: Env, cashback: httpx.AsyncClient) -> None:
    event_id = await env.bus.publish(
        "redemption.completed",
        {
            "redemption_id": str(uuid.uuid4()),
            "account_id": str(uuid.uuid4()),
            "amount": 5,
            "completed_at": "2026-01-01T00:00:00Z",
        },
    )
    dead = await _dead_lettered(env, "cashback.bank-events.dlq", {str(event_id)})
    assert "no redemption" in str(dead[str(event_id)][ERROR_HEADER])


async def test_competing_consumers_never_credit_twice(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchants = [await register_merchant(env, partners) for _ in range(3)]
    for rate, merchant in zip((100, 250, 0), merchants, strict=True):
        if rate:
            await set_offer(partners, merchant, rate)
    rates = {merchants[0].merchant_id: 100, merchants[1].merchant_id: 250, merchants[2].merchant_id: 0}
    payments = [payment_completed(customer, merchants[i % 3], 1_000 + 37 * i) for i in range(90)]
    expected = sum(p["debited_amount"] * rates[uuid.UUID(p["merchant_id"])] // 10_000 for p in payments)
    # Each payment three times: twice with one event id (a redelivery) and once with another (a
    # replayed outbox row), shuffled, to three instances sharing the queue.
    deliveries = [(p, uuid.uuid4()) for p in payments]
    deliveries = [*deliveries, *deliveries, *((p, uuid.uuid4()) for p in payments)]
    random.Random(4).shuffle(deliveries)
    async with (
        running(build_cashback(service_settings("cashback", env))),
        running(build_cashback(service_settings("cashback", env))),
    ):
        await asyncio.gather(*(env.bus.publish("payment.completed", p, event_id=i) for p, i in deliveries))
        await wait_balance(cashback, customer, expected, timeout_s=20)
        await asyncio.sleep(0.5)
        await wait_balance(cashback, customer, expected, timeout_s=1)

    # Entries that earn nothing do not move the balance: wait until every payment has its one entry.
    async def every_payment_once() -> tuple[int, int] | None:
        row = await env.pool.fetchrow(
            "SELECT (SELECT count(*) FROM cashback_entry WHERE payment_id = ANY($1::text[]::uuid[])) AS entries,"
            " (SELECT count(*) FROM outbox_event WHERE event_type IN ('cashback.credited', 'cashback.none')"
            "   AND envelope -> 'data' ->> 'payment_id' = ANY($1::text[])) AS announced,"
            " (SELECT max(entry_version) FROM cashback_entry WHERE payment_id = ANY($1::text[]::uuid[])) AS version",
            [p["payment_id"] for p in payments],
        )
        return (row["entries"], row["announced"]) if row["entries"] == len(payments) and row["version"] == 1 else None

    assert await eventually(every_payment_once, timeout_s=20) == (len(payments), len(payments))
