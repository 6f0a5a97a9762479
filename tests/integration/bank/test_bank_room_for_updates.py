"""Rows the bank updates soon after writing them are updated in place (HOT): common/0007 and bank/0009.

Two rows of every payment are written, then updated: its idempotency key (claimed, then its answer stored,
in one transaction) and the payment row (its cashback outcome, seconds later, in the consumer's batch).
With the default fillfactor (100) the new version often found no room in its page, went to another one,
and took a new entry in each of the table's indexes. Ten per cent of each page is now kept free for it.

Here payments are made as the API makes them (``make_payment``, one transaction each) and their outcomes
applied as the transaction service's consumer does (``UPDATE_CASHBACKS``, a small batch per transaction).
PostgreSQL's statistics say how many of those updates were HOT. With both fillfactors set back to 100
(the migrations edited), 369 of the 400 key updates were, and 329 of the 400 payment updates.
"""

from __future__ import annotations

import uuid

import asyncpg
from bank_api import Bank

from newbank.runtime import PgCluster
from newbank.transactions.queries import UPDATE_CASHBACKS

PAYMENTS = 400
BATCH = 4  # a consumer's batch under moderate load: a few outcomes per commit


async def _updates(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    """(rows updated, of which HOT) in ``table`` so far, this session's own counts included: they are
    flushed to the shared statistics first (the backend does it once idle, here at once)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    row = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = $1::regclass", table
    )
    return row["n_tup_upd"], row["n_tup_hot_upd"]


async def _since(conn: asyncpg.Connection, table: str, before: tuple[int, int]) -> tuple[int, int]:
    updated, hot = await _updates(conn, table)
    return updated - before[0], hot - before[1]


async def _pay(conn: asyncpg.Connection, merchant_id: uuid.UUID, account_id: uuid.UUID) -> uuid.UUID:
    """One payment, in its own transaction as the API makes it."""
    answer = await conn.fetchval(
        "SELECT make_payment($1, $2, 'h', $3, $4, 100, 'EUR', NULL)::jsonb -> 'body' ->> 'id'",
        f"merchant:{merchant_id}",
        str(uuid.uuid4()),
        merchant_id,
        account_id,
    )
    return uuid.UUID(answer)


async def _apply_outcomes(conn: asyncpg.Connection, payment_ids: list[uuid.UUID]) -> None:
    """One transaction per batch, as the consumer commits them."""
    for start in range(0, len(payment_ids), BATCH):
        batch = payment_ids[start : start + BATCH]
        await conn.execute(UPDATE_CASHBACKS, batch, ["credited"] * len(batch), [123] * len(batch), [1] * len(batch))


async def test_keys_and_payments_are_updated_in_place(bank: Bank, pg_cluster: PgCluster) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000_000)
    merchant = await bank.merchant("EUR")
    merchant_id, account_id = uuid.UUID(merchant["id"]), uuid.UUID(account["id"])
    conn = await asyncpg.connect(pg_cluster.superuser_dsn("bank"))
    try:
        keys_before = await _updates(conn, "idempotency_key")
        payment_ids = [await _pay(conn, merchant_id, account_id) for _ in range(PAYMENTS)]
        key_updates, key_updates_hot = await _since(conn, "idempotency_key", keys_before)
        payments_before = await _updates(conn, "payment")
        await _apply_outcomes(conn, payment_ids)
        updated, hot = await _since(conn, "payment", payments_before)
        payment_options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'payment'::regclass")
        outcomes = await conn.fetch(
            "SELECT cashback_status, cashback_amount, count(*) AS n FROM payment WHERE id = ANY($1::uuid[])"
            " GROUP BY 1, 2",
            payment_ids,
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in outcomes] == [("credited", 123, PAYMENTS)]
    assert key_updates == PAYMENTS  # its answer stored
    assert key_updates_hot >= 0.98 * key_updates, f"{key_updates_hot} of {key_updates} key updates were HOT"
    assert updated == PAYMENTS
    # Fewer of these are HOT either way, and how many varies from run to run: a batch's old versions die
    # only at its commit. Here 347 and 370 of 400 (with 100: 329); under load 70-89 % (with 100: 35-62 %).
    assert hot >= 0.8 * PAYMENTS, f"{hot} of {updated} payment updates were HOT"
    assert "fillfactor=90" in payment_options, payment_options
