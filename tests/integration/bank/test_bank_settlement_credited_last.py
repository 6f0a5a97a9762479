"""A payment locks its merchant's settlement row only after writing everything else (bank/0008).

Every payment to one merchant updates that merchant's settlement row, and the lock lasts until the
commit has waited for the synchronous standby. Here another session holds that row; the payment then
waits on it, and what it already holds shows how far it got: with the settlement credited last, its
payment row, postings and outbox event are written (their tables' RowExclusiveLocks are granted to
it); with 0002's order it would have waited right after debiting the customer, before any of those.
Once the row is free the payment completes with the same rows as ever, and its entry sums to zero.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from bank_api import Bank

from newbank.runtime import PgCluster

WRITTEN_BEFORE_THE_SETTLEMENT = {"journal_entry", "posting", "payment", "outbox_event", "idempotency_key"}


async def _tables_locked_by(conn: asyncpg.Connection, pid: int) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = $1 AND l.granted AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
        pid,
    )
    return {row["relname"] for row in rows}


async def _wait_until_blocked(conn: asyncpg.Connection, pid: int, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the payment never waited for the settlement row")


@pytest.mark.parametrize("account_currency", ["EUR", "USD"], ids=["same currency", "FX"])
async def test_payment_waits_for_the_settlement_row_only_at_its_end(
    bank: Bank, pg_cluster: PgCluster, account_currency: str
) -> None:
    dsn = pg_cluster.superuser_dsn("bank")
    _, account = await bank.funded_account(account_currency, deposit=100_000)
    merchant = await bank.merchant("EUR")
    await bank.set_rate("EUR", "USD", "1.0842")
    holder, payer, observer = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        settlement = await observer.fetchval(
            "SELECT settlement_account_id FROM merchant WHERE id = $1", uuid.UUID(merchant["id"])
        )
        before = await observer.fetchval("SELECT balance FROM account WHERE id = $1", settlement)
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM account WHERE id = $1 FOR UPDATE", settlement)
        payer_pid = await payer.fetchval("SELECT pg_backend_pid()")
        payment = asyncio.create_task(
            payer.fetchval(
                "SELECT make_payment($1, $2, 'h', $3, $4, 1000, 'EUR', 'lock order')",
                f"merchant:{merchant['id']}",
                str(uuid.uuid4()),
                uuid.UUID(merchant["id"]),
                uuid.UUID(account["id"]),
            )
        )
        try:
            await _wait_until_blocked(observer, payer_pid)
            written = await _tables_locked_by(observer, payer_pid)
        finally:
            await holding.rollback()
        answer: Any = await asyncio.wait_for(payment, timeout=10)
        assert WRITTEN_BEFORE_THE_SETTLEMENT <= written, written

        assert '"status": 201' in answer, answer
        payment_id = uuid.UUID(str(await observer.fetchval("SELECT ($1::jsonb -> 'body' ->> 'id')", answer)))
        postings = await observer.fetch(
            "SELECT account_id, currency, amount FROM posting WHERE journal_entry_id = $1", payment_id
        )
        assert len(postings) == (2 if account_currency == "EUR" else 4)
        for currency in {p["currency"] for p in postings}:
            assert sum(p["amount"] for p in postings if p["currency"] == currency) == 0
        assert [p["amount"] for p in postings if p["account_id"] == settlement] == [1000]
        assert await observer.fetchval("SELECT balance FROM account WHERE id = $1", settlement) == before + 1000
    finally:
        for conn in (holder, payer, observer):
            await conn.close()
