"""Rows the bank updates soon after writing them are updated in place (HOT): common/0007 and bank/0009.

Two rows of every payment are written, then updated: its idempotency key (claimed, then its answer stored,
in one transaction) and the payment row (its cashback outcome, seconds later, in the consumer's batch).
With the default fillfactor (100) the new version often found no room in its page, went to another one,
and took a new entry in each of the table's indexes. Ten per cent of each page is now kept free for it.

Here payments are made as the API makes them (``make_payment``, one transaction each) and their outcomes
applied as the transaction service's consumer does (``UPDATE_CASHBACKS``, a small batch per transaction).
Each row's current version, looked up in its page, says whether its update stayed there (HOT). With both
fillfactors set back to 100 (the migrations edited), 369 of the 400 key updates did in each of two runs,
and the test fails; for the payments it checks the table's option (see below why not the count).
"""

from __future__ import annotations

import uuid

import asyncpg
from bank_api import Bank

from newbank.runtime import PgCluster
from newbank.transactions.queries import UPDATE_CASHBACKS

PAYMENTS = 400
BATCH = 4  # a consumer's batch under moderate load: a few outcomes per commit


# Each row's current version, looked up in its page (pageinspect): a version that an update placed in the
# same page as the row's previous one is marked heap-only (HEAP_ONLY_TUPLE); no index then points at it.
# These rows are updated once, so that mark says whether their one update stayed in its page. The global
# statistics would count the other sessions' updates of the same tables too.
_HEAP_ONLY = """
SELECT count(*) FROM unnest($2::tid[]) AS row(ctid)
 CROSS JOIN LATERAL heap_page_items(get_raw_page($1, (row.ctid::text::point)[0]::bigint)) AS item
 WHERE item.lp = (row.ctid::text::point)[1]::int AND item.t_infomask2 & 32768 <> 0
"""


async def _updated_in_place(conn: asyncpg.Connection, table: str, ctids: list[object]) -> int:
    return await conn.fetchval(_HEAP_ONLY, table, ctids)


async def _pay(conn: asyncpg.Connection, merchant_id: uuid.UUID, account_id: uuid.UUID, key: str) -> uuid.UUID:
    """One payment, in its own transaction as the API makes it."""
    answer = await conn.fetchval(
        "SELECT make_payment($1, $2, 'h', $3, $4, 100, 'EUR', NULL)::jsonb -> 'body' ->> 'id'",
        f"merchant:{merchant_id}",
        key,
        merchant_id,
        account_id,
    )
    return uuid.UUID(answer)


async def _apply_outcomes(conn: asyncpg.Connection, payment_ids: list[uuid.UUID]) -> None:
    """One transaction per batch, as the consumer commits them."""
    for start in range(0, len(payment_ids), BATCH):
        batch = payment_ids[start : start + BATCH]
        await conn.execute(UPDATE_CASHBACKS, batch, ["credited"] * len(batch), [123] * len(batch), [1] * len(batch))


async def test_keys_are_updated_in_place_and_payments_have_room(bank: Bank, pg_cluster: PgCluster) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000_000)
    merchant = await bank.merchant("EUR")
    merchant_id, account_id = uuid.UUID(merchant["id"]), uuid.UUID(account["id"])
    keys = [str(uuid.uuid4()) for _ in range(PAYMENTS)]
    conn = await asyncpg.connect(pg_cluster.superuser_dsn("bank"))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        payment_ids = [await _pay(conn, merchant_id, account_id, key) for key in keys]
        key_rows = await conn.fetch(
            "SELECT ctid, status_code FROM idempotency_key WHERE scope = $1 AND key = ANY($2::text[])",
            f"merchant:{merchant_id}",
            keys,
        )
        keys_in_place = await _updated_in_place(conn, "idempotency_key", [row["ctid"] for row in key_rows])
        await _apply_outcomes(conn, payment_ids)
        payment_rows = await conn.fetch(
            "SELECT cashback_status, cashback_amount FROM payment WHERE id = ANY($1::uuid[])", payment_ids
        )
        payment_options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'payment'::regclass")
    finally:
        await conn.close()
    assert sorted(row["status_code"] for row in key_rows) == [201] * PAYMENTS  # every answer stored
    assert keys_in_place >= 0.98 * PAYMENTS, f"{keys_in_place} of {PAYMENTS} key updates stayed in their page"
    assert (
        sorted((row["cashback_status"], row["cashback_amount"]) for row in payment_rows)
        == [("credited", 123)] * PAYMENTS
    )
    # How many payment updates stay in their page is not asserted: a batch's old versions die only at its
    # commit, and page pruning can reclaim them only once no snapshot still sees them, so the count depends
    # on what else runs. 370 of 400 alone (twice), 320 in the whole suite; with 100, 329 and 276 alone.
    # Under load: 70-89 % against 35-62 % (eighteenth session, `loadtest/README.md`).
    assert "fillfactor=90" in payment_options, payment_options
