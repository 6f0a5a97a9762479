"""Events in and out of the Bank over the real broker: outbox delivery (also across a broker outage),
cashback outcomes shown on payments, cashback redemptions credited once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from bank_api import Bank, eventually, publish

from newbank.messaging.events import Event
from newbank.messaging.topology import EVENTS_EXCHANGE
from newbank.runtime import RabbitMQ
from newbank.transactions.consumers import on_cashback_outcome, on_cashback_outcomes

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(bank: Bank) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(bank.services.database_url)
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
    )
    try:
        yield conn
    finally:
        await conn.close()


async def test_events_carry_what_consumers_need(bank: Bank, db: asyncpg.Connection) -> None:
    customer, account = await bank.funded_account("USD", deposit=10_000)
    merchant = await bank.merchant("EUR")
    await bank.set_rate("EUR", "USD", "1.25")
    payment = (await bank.pay(merchant, account["id"], 800)).json()
    await bank.refund(merchant, payment["id"], 200)

    async def envelopes(kind: str, field: str, value: str) -> list[dict[str, Any]]:
        rows = await db.fetch(
            "SELECT envelope FROM outbox_event WHERE event_type = $1 AND envelope->'data'->>$2 = $3", kind, field, value
        )
        return [row["envelope"] for row in rows]

    (registered,) = await envelopes("merchant.registered", "merchant_id", merchant["id"])
    assert registered["data"]["currency"] == "EUR" and registered["data"]["category"] == "books"
    assert {"name", "country", "website", "created_at"} <= registered["data"].keys()
    (opened,) = await envelopes("account.opened", "account_id", account["id"])
    assert opened["data"] == {
        "account_id": account["id"],
        "customer_id": customer["id"],
        "currency": "USD",
        "created_at": opened["data"]["created_at"],
    }
    (completed,) = await envelopes("payment.completed", "payment_id", payment["id"])
    data = completed["data"]
    assert data["debited_amount"] == 1_000 and data["fx_rate"] == "1.25" and data["customer_id"] == customer["id"]
    assert data["merchant_id"] == merchant["id"] and data["created_at"] == payment["created_at"]
    assert completed["version"] == 1 and completed["source"] == "transactions"
    (refunded,) = await envelopes("payment.refunded", "payment_id", payment["id"])
    assert refunded["data"]["credited_amount"] == 250 and refunded["data"]["refunded_amount"] == 200

    async def all_published() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM outbox_event WHERE published_at IS NULL AND id = ANY($1::uuid[])",
            [uuid.UUID(e["id"]) for e in (registered, opened, completed, refunded)],
        )

    await eventually(all_published)


async def test_cashback_outcome_is_shown_on_the_payment_newest_version_wins(bank: Bank, rabbitmq: RabbitMQ) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    payment = (await bank.pay(merchant, account["id"], 5_000)).json()
    path = f"/api/v1/payments/{payment['id']}"

    async def cashback() -> dict[str, Any]:
        return (await bank.transactions[0].get(path, headers=bank.admin)).json()["cashback"]

    def outcome(status: str, amount: int, version: int) -> dict[str, Any]:
        return {
            "payment_id": payment["id"],
            "account_id": account["id"],
            "status": status,
            "amount": amount,
            "earned": 100,
            "reversed_amount": 100 - amount,
            "currency": "EUR",
            "entry_version": version,
        }

    await publish(rabbitmq.amqp_url, "cashback.credited", outcome("credited", 100, 2))

    async def credited() -> bool:
        return await cashback() == {"status": "credited", "amount": 100}

    await eventually(credited)
    # An older outcome arriving late changes nothing; a newer one does.
    await publish(rabbitmq.amqp_url, "cashback.none", outcome("none", 0, 1))
    await publish(rabbitmq.amqp_url, "cashback.reversed", outcome("reversed", 0, 3))

    async def reversed_() -> bool:
        return await cashback() == {"status": "reversed", "amount": 0}

    await eventually(reversed_)


async def test_redemption_is_credited_exactly_once(bank: Bank, rabbitmq: RabbitMQ, db: asyncpg.Connection) -> None:
    customer, account = await bank.funded_account("EUR", deposit=1_000)
    redemption_id = str(uuid.uuid4())
    data = {
        "redemption_id": redemption_id,
        "account_id": account["id"],
        "customer_id": customer["id"],
        "amount": 250,
        "currency": "EUR",
        "created_at": datetime.now(UTC).isoformat(),
    }
    first = uuid.uuid4()
    await publish(rabbitmq.amqp_url, "cashback.redeemed", data, first)
    await publish(rabbitmq.amqp_url, "cashback.redeemed", data, first)  # redelivered
    await publish(rabbitmq.amqp_url, "cashback.redeemed", data)  # re-published under a new event id

    async def credited() -> bool:
        return await bank.balance(account["id"]) == 1_250

    await eventually(credited)

    async def completed() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT envelope, published_at FROM outbox_event WHERE event_type = 'redemption.completed'"
            " AND envelope->'data'->>'redemption_id' = $1 AND published_at IS NOT NULL",
            redemption_id,
        )

    rows = await eventually(completed)
    assert len(rows) == 1
    assert rows[0]["envelope"]["data"]["amount"] == 250 and rows[0]["envelope"]["data"]["account_id"] == account["id"]
    # Every copy was taken off the queue (applied or found a duplicate) and nothing more was credited.
    await asyncio.sleep(1.0)
    assert await bank.balance(account["id"]) == 1_250
    assert (
        await db.fetchval("SELECT count(*) FROM cashback_credit WHERE redemption_id = $1", uuid.UUID(redemption_id))
        == 1
    )


async def test_a_broken_redemption_is_dead_lettered_not_credited(bank: Bank, rabbitmq: RabbitMQ) -> None:
    _, account = await bank.funded_account("EUR", deposit=100)
    data = {"redemption_id": str(uuid.uuid4()), "account_id": account["id"], "amount": 5, "currency": "JPY"}
    await publish(rabbitmq.amqp_url, "cashback.redeemed", data)
    await asyncio.sleep(1.0)
    assert await bank.balance(account["id"]) == 100


async def test_payments_succeed_while_the_broker_is_down_and_every_event_leaves_after(
    bank: Bank, rabbitmq: RabbitMQ, db: asyncpg.Connection
) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    # A durable queue of the test's own, bound like the cashback service's, collects what is published.
    watch = f"test.bank-outbox.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(rabbitmq.amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(watch, durable=True)
    await queue.bind(EVENTS_EXCHANGE, "payment.completed")
    await connection.close()

    rabbitmq.stop()
    try:
        responses = await asyncio.gather(*(bank.pay(merchant, account["id"], 10, instance=i % 2) for i in range(20)))
        assert [r.status_code for r in responses] == [201] * 20
        payment_ids = {r.json()["id"] for r in responses}
        pending = await db.fetchval(
            "SELECT count(*) FROM outbox_event WHERE event_type = 'payment.completed' AND published_at IS NULL"
            " AND envelope->'data'->>'payment_id' = ANY($1::text[])",
            list(payment_ids),
        )
        assert pending == 20
        ready = await bank.transactions[0].get("/readyz")
        assert ready.status_code == 503 and ready.json()["broker"] is False
    finally:
        rabbitmq.start()

    async def all_published() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM outbox_event WHERE event_type = 'payment.completed' AND published_at IS NULL"
            " AND envelope->'data'->>'payment_id' = ANY($1::text[])",
            list(payment_ids),
        )

    await eventually(all_published, timeout_s=60)

    received: set[str] = set()
    connection = await aio_pika.connect(rabbitmq.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(watch)
        while True:
            message = await queue.get(fail=False, timeout=5)
            if message is None:
                break
            received.add(orjson.loads(message.body)["data"]["payment_id"])
            await message.ack()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    assert payment_ids <= received

    async def ready_again() -> bool:
        return all([(await client.get("/readyz")).status_code == 200 for client in bank.transactions])

    await eventually(ready_again, timeout_s=30)


async def test_a_run_of_cashback_outcomes_applies_as_one_by_one(bank: Bank, db: asyncpg.Connection) -> None:
    """The consumer's batch handler (one UPDATE for the run) leaves each payment as the single-event
    handler on each outcome in turn does: the newest version wins, whatever the order in the run."""
    _, account = await bank.funded_account("EUR", deposit=100_000)
    merchant = await bank.merchant("EUR")
    payments = [(await bank.pay(merchant, account["id"], 1_000 + n)).json()["id"] for n in range(4)]

    def outcome(n: int, kind: str, amount: int, version: int) -> Event:
        data = {"payment_id": payments[n], "status": kind, "amount": amount, "entry_version": version}
        return Event(
            id=uuid.uuid4(),
            type=f"cashback.{kind}",
            version=1,
            source="cashback",
            occurred_at=datetime.now(UTC),
            data=data,
        )

    run = [
        outcome(0, "credited", 100, 1),
        outcome(1, "none", 0, 1),
        outcome(0, "reversed", 0, 2),
        outcome(2, "credited", 50, 2),
        outcome(2, "credited", 70, 1),  # older than the one before it: changes nothing
        outcome(3, "credited", 30, 1),
    ]

    async def shown() -> list[tuple[str, int | None, int]]:
        rows = await db.fetch(
            "SELECT cashback_status, cashback_amount, cashback_version FROM payment"
            " WHERE id = ANY($1::uuid[]) ORDER BY array_position($1::uuid[], id)",
            [uuid.UUID(p) for p in payments],
        )
        return [tuple(row) for row in rows]

    async def one_by_one() -> None:
        for event in run:
            await on_cashback_outcome(db, event)

    async def as_a_run() -> None:
        await on_cashback_outcomes(db, run)

    results = []
    for apply in (one_by_one, as_a_run):
        tx = db.transaction()
        await tx.start()
        try:
            await apply()
            results.append(await shown())
        finally:
            await tx.rollback()
    assert results[0] == results[1] == [("reversed", 0, 2), ("none", None, 1), ("credited", 50, 2), ("credited", 30, 1)]
