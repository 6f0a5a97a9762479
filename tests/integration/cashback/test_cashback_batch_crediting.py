"""A run of payment.completed events credited in two statements gives what the single-event handler
gives on each in turn: the same entries, the same balances, the same cashback events (real PostgreSQL).

Both are applied to the same kind of payments, in transactions that are rolled back: an account that
earns several times in the run, an account the cashback service has not heard of yet, a merchant with no
offer (nothing earned), the same payment under a second event id, and a payment whose entry exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from cashback_harness import Env

from newbank.cashback.crediting import on_payment_completed, on_payments_completed
from newbank.database import create_pool
from newbank.messaging.events import Event

pytestmark = [pytest.mark.integration]
RATE_BPS = 250


def _event(payment: dict[str, Any]) -> Event:
    return Event(
        id=uuid.uuid4(),
        type="payment.completed",
        version=1,
        source="transactions",
        occurred_at=datetime.now(UTC),
        data=payment,
    )


def _payment(account: uuid.UUID, customer: uuid.UUID, merchant: uuid.UUID, debited: int) -> dict[str, Any]:
    return {
        "payment_id": str(uuid.uuid4()),
        "account_id": str(account),
        "customer_id": str(customer),
        "merchant_id": str(merchant),
        "amount": debited,
        "currency": "EUR",
        "debited_amount": debited,
        "account_currency": "EUR",
        "created_at": datetime.now(UTC).isoformat(),
    }


async def _scenario(
    conn: asyncpg.Connection, apply: Callable[[asyncpg.Connection, list[Event]], Awaitable[None]]
) -> dict[str, Any]:
    """Set up, apply the run, and describe the outcome without the random ids."""
    offered, unoffered = uuid.uuid4(), uuid.uuid4()
    for merchant in (offered, unoffered):
        await conn.execute(
            "INSERT INTO partner_store (merchant_id, name, country, currency, registered_at)"
            " VALUES ($1, 'batch test', 'FR', 'EUR', now() - interval '1 day')",
            merchant,
        )
    await conn.execute(
        "INSERT INTO partner_offer (merchant_id, version, rate_bps, set_at, set_by)"
        " VALUES ($1, 1, $2, now() - interval '1 hour', 'test')",
        offered,
        RATE_BPS,
    )
    known_customer, new_customer = uuid.uuid4(), uuid.uuid4()
    known_account, new_account = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO cashback_account (account_id, customer_id, currency, balance, opened_at)"
        " VALUES ($1, $2, 'EUR', 1000, now())",
        known_account,
        known_customer,
    )
    payments = [
        _payment(known_account, known_customer, offered, 10_000),
        _payment(known_account, known_customer, offered, 3_999),
        _payment(new_account, new_customer, offered, 800),
        _payment(known_account, known_customer, unoffered, 5_000),
        _payment(new_account, new_customer, offered, 1_201),
    ]
    already = _payment(known_account, known_customer, offered, 7_000)
    await apply(conn, [_event(already)])  # its entry exists before the run
    before = await conn.fetchval("SELECT max(seq) FROM outbox_event") or 0
    balance_before = await conn.fetchval("SELECT balance FROM cashback_account WHERE account_id = $1", known_account)
    run = [_event(p) for p in payments]
    run.insert(2, _event(payments[0]))  # the same payment under a second event id
    run.append(_event(already))
    await apply(conn, run)

    order = {p["payment_id"]: n for n, p in enumerate(payments)}
    entries = await conn.fetch(
        "SELECT payment_id::text, status, earned, rate_bps, offer_version, entry_version FROM cashback_entry"
        " WHERE payment_id = ANY($1::uuid[])",
        [p["payment_id"] for p in payments],
    )
    events = await conn.fetch(
        "SELECT event_type, envelope -> 'data' AS data FROM outbox_event WHERE seq > $1 ORDER BY seq", before
    )
    return {
        "entries": sorted(
            (order[r["payment_id"]], r["status"], r["earned"], r["rate_bps"], r["offer_version"], r["entry_version"])
            for r in entries
        ),
        "known_account_earned": await conn.fetchval(
            "SELECT balance FROM cashback_account WHERE account_id = $1", known_account
        )
        - balance_before,
        "new_account": dict(
            await conn.fetchrow(
                "SELECT customer_id = $2 AS right_customer, currency, balance FROM cashback_account"
                " WHERE account_id = $1",
                new_account,
                new_customer,
            )
        ),
        "events": [
            (e["event_type"], order[e["data"]["payment_id"]], e["data"]["amount"], e["data"]["status"]) for e in events
        ],
    }


async def _one_by_one(conn: asyncpg.Connection, events: list[Event]) -> None:
    for event in events:
        await on_payment_completed(conn, event)


async def test_a_run_credits_as_the_single_handler_does(cashback_env: Env) -> None:
    pool = await create_pool(cashback_env.dsn, min_size=1, max_size=1, command_timeout=10)
    outcomes = []
    async with pool.acquire() as conn:
        for apply in (_one_by_one, on_payments_completed):
            tx = conn.transaction()
            await tx.start()
            try:
                outcomes.append(await _scenario(conn, apply))
            finally:
                await tx.rollback()
    await pool.close()
    single, batch = outcomes
    assert batch == single
    # And what that is: 2.5 % of each offered payment, floored; nothing from the merchant with no offer.
    assert single["entries"] == [
        (0, "credited", 250, RATE_BPS, 1, 1),
        (1, "credited", 99, RATE_BPS, 1, 1),
        (2, "credited", 20, RATE_BPS, 1, 1),
        (3, "none", 0, 0, None, 1),
        (4, "credited", 30, RATE_BPS, 1, 1),
    ]
    assert single["known_account_earned"] == 250 + 99
    assert single["new_account"] == {"right_customer": True, "currency": "EUR", "balance": 20 + 30}
    assert single["events"] == [
        ("cashback.credited", 0, 250, "credited"),
        ("cashback.credited", 1, 99, "credited"),
        ("cashback.credited", 2, 20, "credited"),
        ("cashback.none", 3, 0, "none"),
        ("cashback.credited", 4, 30, "credited"),
    ]
