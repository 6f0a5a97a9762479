"""The ledger adds up: SQL rounding agrees with ``newbank.money``, and ``newbank ledger verify`` finds
no difference after a mixed workload (and does find one when a balance is tampered with)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import psycopg2
import pytest
from bank_api import Bank, BankServices, eventually, publish
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newbank.money import MAX_AMOUNT, convert, currency_exponent
from newbank.runtime import RabbitMQ

pytestmark = pytest.mark.integration

CURRENCIES = ["EUR", "USD", "JPY", "KWD", "BHD", "GBP", "CLF", "ISK"]


@pytest.fixture(scope="module")
def sql(bank_services: BankServices) -> Iterator[psycopg2.extensions.cursor]:
    conn = psycopg2.connect(bank_services.database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    amount=st.integers(min_value=1, max_value=MAX_AMOUNT),
    rate=st.decimals(min_value=Decimal("0.000000000001"), max_value=Decimal("1000000"), places=12),
    source=st.sampled_from(CURRENCIES),
    target=st.sampled_from(CURRENCIES),
)
def test_sql_conversion_equals_python_half_even(
    sql: psycopg2.extensions.cursor, amount: int, rate: Decimal, source: str, target: str
) -> None:
    # The exact expression make_payment uses (exponents are smallint columns there).
    sql.execute(
        "SELECT round_half_even(%s::bigint * %s::numeric * power(10::numeric, %s::smallint - %s::smallint))",
        (amount, str(rate), currency_exponent(target), currency_exponent(source)),
    )
    (in_sql,) = sql.fetchone()
    assert int(in_sql) == convert(amount, source, target, rate)


@given(x=st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=3))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_round_half_even_matches_decimal(sql: psycopg2.extensions.cursor, x: Decimal) -> None:
    sql.execute("SELECT round_half_even(%s::numeric)", (str(x),))
    (in_sql,) = sql.fetchone()
    assert Decimal(in_sql) == x.quantize(Decimal(1), rounding="ROUND_HALF_EVEN")


async def ledger_verify(database_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "newbank.cli_ledger",
        "verify",
        "--database-url",
        database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_ledger_verifies_after_a_mixed_workload(bank: Bank, rabbitmq: RabbitMQ) -> None:
    await bank.set_rate("GBP", "EUR", "1.1713")
    await bank.set_rate("JPY", "EUR", "0.0061")
    merchants = [await bank.merchant(currency) for currency in ("EUR", "GBP", "JPY")]
    accounts = [(await bank.funded_account("EUR", deposit=50_000))[1] for _ in range(4)]
    payments = []
    for i in range(30):
        merchant = merchants[i % 3]
        response = await bank.pay(merchant, accounts[i % 4]["id"], 137 * (i + 1), instance=i % 2)
        assert response.status_code in (201, 402), response.text
        if response.status_code == 201:
            payments.append((merchant, response.json()))
    for merchant, payment in payments[::3]:
        assert (await bank.refund(merchant, payment["id"], payment["amount"] // 3)).status_code == 201
    for merchant, payment in payments[::5]:
        response = await bank.refund(merchant, payment["id"], payment["amount"] - payment["amount"] // 3)
        assert response.status_code in (201, 422)
    redemption = {
        "redemption_id": str(uuid.uuid4()),
        "account_id": accounts[0]["id"],
        "amount": 77,
        "currency": "EUR",
        "created_at": datetime.now(UTC).isoformat(),
    }
    before = await bank.balance(accounts[0]["id"])
    await publish(rabbitmq.amqp_url, "cashback.redeemed", redemption)

    async def redeemed() -> bool:
        return await bank.balance(accounts[0]["id"]) == before + 77

    await eventually(redeemed)

    code, output = await ledger_verify(bank.services.database_url)
    assert code == 0, output
    assert "OK" in output and "journal entries" in output

    # Tampering with one stored balance is found, named, and makes the command fail.
    conn = await asyncpg.connect(bank.services.database_url)
    account_id = uuid.UUID(accounts[1]["id"])
    try:
        await conn.execute("UPDATE account SET balance = balance + 1 WHERE id = $1", account_id)
        code, output = await ledger_verify(bank.services.database_url)
        assert code == 1 and str(account_id) in output and "FAILED" in output
    finally:
        await conn.execute("UPDATE account SET balance = balance - 1 WHERE id = $1", account_id)
        await conn.close()
    code, output = await ledger_verify(bank.services.database_url)
    assert code == 0, output


async def test_an_unbalanced_journal_entry_is_found(bank: Bank) -> None:
    conn = await asyncpg.connect(bank.services.database_url)
    entry = uuid.uuid4()
    try:
        async with conn.transaction():
            funding = await conn.fetchval("SELECT system_account('funding', 'EUR', 2::smallint)")
            await conn.execute("INSERT INTO journal_entry (id, kind) VALUES ($1, 'deposit')", entry)
            await conn.execute(
                "INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES ($1, $2, 'EUR', 5)",
                entry,
                funding,
            )
        code, output = await ledger_verify(bank.services.database_url)
        assert code == 1 and str(entry) in output
    finally:
        await conn.execute("DELETE FROM posting WHERE journal_entry_id = $1", entry)
        await conn.execute("DELETE FROM journal_entry WHERE id = $1", entry)
        await conn.close()
