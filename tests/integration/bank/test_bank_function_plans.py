"""The money paths run no SQL-language function that PostgreSQL must plan again on every call.

A SQL function that cannot be inlined (several statements, a write, a body more volatile than the
function) parses, analyses and plans its body in every transaction when PL/pgSQL calls it;
idempotency_store did, for 17 % of a payment's backend CPU (migration common/0006).
``track_functions = all`` (a superuser's setting) counts the functions a transaction really called
(inlined ones are not calls); the transaction is rolled back.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from bank_api import Bank

from newbank.runtime import PgCluster


async def _functions_called(dsn: str, sql: str, *args: Any) -> tuple[Any, dict[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SET LOCAL track_functions = 'all'")
            answer = await conn.fetchval(sql, *args)
            rows = await conn.fetch(
                "SELECT f.funcname, l.lanname FROM pg_stat_xact_user_functions f "
                "JOIN pg_proc p ON p.oid = f.funcid JOIN pg_language l ON l.oid = p.prolang"
            )
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    return answer, {row["funcname"]: row["lanname"] for row in rows}


def _payment(merchant: dict[str, Any], account_id: str, key: str) -> tuple[Any, ...]:
    scope = f"merchant:{merchant['id']}"
    return ("SELECT make_payment($1, $2, 'h', $3, $4, 100, $5, 'plans')", scope, key,
            uuid.UUID(merchant["id"]), uuid.UUID(account_id), merchant["currency"])  # fmt: skip


async def test_payments_and_refunds_call_only_plpgsql(bank: Bank, pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.superuser_dsn("bank")
    _, eur_account = await bank.funded_account("EUR", deposit=100_000)
    _, usd_account = await bank.funded_account("USD", deposit=100_000)
    merchant = await bank.merchant("EUR")
    await bank.set_rate("EUR", "USD", "1.0842")
    paid = await bank.pay(merchant, eur_account["id"], 500, key="plans-paid")
    assert paid.status_code == 201, paid.text

    calls = {
        "payment": await _functions_called(dsn, *_payment(merchant, eur_account["id"], str(uuid.uuid4()))),
        "FX payment": await _functions_called(dsn, *_payment(merchant, usd_account["id"], str(uuid.uuid4()))),
        "replayed payment": await _functions_called(dsn, *_payment(merchant, eur_account["id"], "plans-paid")),
        "refused payment": await _functions_called(dsn, *_payment(merchant, str(uuid.uuid4()), str(uuid.uuid4()))),
        "refund": await _functions_called(
            dsn, "SELECT make_refund($1, $2, 'h', $3, $4, 100)", f"merchant:{merchant['id']}", str(uuid.uuid4()),
            uuid.UUID(merchant["id"]), uuid.UUID(paid.json()["id"]),
        ),
    }  # fmt: skip
    for path, (answer, functions) in calls.items():
        assert answer is not None, path
        assert "make_payment" in functions or "make_refund" in functions, (path, functions)
        assert {name: lang for name, lang in functions.items() if lang == "sql"} == {}, path
    assert '"status": 201' in calls["FX payment"][0] and "system_account" in calls["FX payment"][1]
    assert "idempotency_store" in calls["payment"][1] and "idempotency_store" in calls["refund"][1]
    assert '"status": 404' in calls["refused payment"][0] and "idempotency_release" in calls["refused payment"][1]
