"""New payments, refunds and outbox events get time-ordered ids (migrations common/0005, bank/0006),
so the indexes keyed by them grow at their right edge instead of at random pages."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from bank_api import Bank

MONEY_FUNCTIONS = ["make_payment", "make_refund", "make_deposit", "credit_redemption", "outbox_add"]


async def test_payment_refund_and_their_events_have_time_ordered_ids(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    payments = []
    for _ in range(3):
        response = await bank.pay(merchant, account["id"], 100)
        assert response.status_code == 201, response.text
        payments.append(uuid.UUID(response.json()["id"]))
        await asyncio.sleep(0.005)  # a new millisecond: the order is by time, random within one
    refund = await bank.refund(merchant, str(payments[0]), 50)
    assert refund.status_code == 201, refund.text

    assert all(p.version == 7 for p in payments), payments
    assert payments == sorted(payments)
    assert uuid.UUID(refund.json()["id"]).version == 7
    conn = await asyncpg.connect(bank.services.database_url)
    try:
        events = await conn.fetch(
            "SELECT id FROM outbox_event WHERE envelope -> 'data' ->> 'payment_id' = ANY($1::text[]) ORDER BY seq",
            [str(p) for p in payments],
        )
        assert len(events) == 4 and all(e["id"].version == 7 for e in events)
        source = await conn.fetchval(
            "SELECT string_agg(prosrc, ' ') FROM pg_proc WHERE proname = ANY($1::text[])", MONEY_FUNCTIONS
        )
        assert "gen_random_uuid" not in source and source.count("uuid_time_ordered()") == len(MONEY_FUNCTIONS)
    finally:
        await conn.close()
