"""Payments and refunds through the transaction service (two instances), against the real database."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest
from bank_api import Bank, problem

from newbank.money import convert

pytestmark = pytest.mark.integration


async def test_payment_moves_money_and_is_readable_by_those_involved(bank: Bank) -> None:
    customer, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    response = await bank.pay(merchant, account["id"], 2_550, reference="order 42 — café")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "completed"
    assert payment["amount"] == payment["debited_amount"] == 2_550
    assert payment["currency"] == payment["account_currency"] == "EUR"
    assert payment["fx_rate"] == "1" and payment["refunded_amount"] == 0
    assert payment["reference"] == "order 42 — café"
    assert payment["merchant_id"] == merchant["id"] and payment["account_id"] == account["id"]
    assert payment["cashback"] == {"status": "pending"}
    assert payment["created_at"].endswith("Z")
    assert await bank.balance(account["id"]) == 7_450
    me = await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(merchant["api_key"]))
    assert me.json()["settlement_balance"] == 2_550

    path = f"/api/v1/payments/{payment['id']}"
    for key in (merchant["api_key"], customer["api_key"], bank.services.admin_token):
        for client in bank.transactions:
            read = await client.get(path, headers=bank.auth(key))
            assert read.status_code == 200 and read.json() == payment
    other_merchant = await bank.merchant("EUR")
    other_customer = await bank.customer()
    problem(await bank.transactions[0].get(path, headers=bank.auth(other_merchant["api_key"])), 404)
    problem(await bank.transactions[0].get(path, headers=bank.auth(other_customer["api_key"])), 404)
    problem(await bank.transactions[0].get(path), 401)
    problem(await bank.transactions[0].get(f"/api/v1/payments/{uuid.uuid4()}", headers=bank.admin), 404)
    assert (await bank.transactions[0].get("/api/v1/payments/nope", headers=bank.admin)).status_code in (404, 422)


async def test_no_overdraft_under_concurrency_across_two_instances(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=1_000)
    merchant = await bank.merchant("EUR")
    responses = await asyncio.gather(*(bank.pay(merchant, account["id"], 10, instance=i % 2) for i in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 100, statuses
    assert statuses.count(402) == 100, statuses
    for refused in (r for r in responses if r.status_code == 402):
        assert refused.json()["type"] == "insufficient-funds"
    assert await bank.balance(account["id"]) == 0
    me = await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(merchant["api_key"]))
    assert me.json()["settlement_balance"] == 1_000


async def test_idempotent_replay_conflict_and_scope(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=1_000)
    merchant = await bank.merchant("EUR")
    first = await bank.pay(merchant, account["id"], 100, key="order-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    for instance in (0, 1):
        again = await bank.pay(merchant, account["id"], 100, key="order-1", instance=instance)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
    problem(await bank.pay(merchant, account["id"], 101, key="order-1"), 409, "idempotency-key-reused")
    assert await bank.balance(account["id"]) == 900
    # Keys are scoped per caller: another merchant's "order-1" is its own request.
    other = await bank.merchant("EUR")
    theirs = await bank.pay(other, account["id"], 100, key="order-1")
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert await bank.balance(account["id"]) == 800
    # A 402 is a decision on the money: replayed as it was, even after the balance would cover it.
    refused = await bank.pay(merchant, account["id"], 5_000, key="too-much")
    problem(refused, 402, "insufficient-funds")
    await bank.deposit(account["id"], 10_000)
    replay = await bank.pay(merchant, account["id"], 5_000, key="too-much")
    assert replay.status_code == 402 and replay.headers["idempotent-replayed"] == "true"
    # An invalid request leaves nothing behind: corrected, the same key works.
    problem(await bank.pay(merchant, str(uuid.uuid4()), 100, key="fixable"), 404, "account-not-found")
    assert (await bank.pay(merchant, account["id"], 100, key="fixable")).status_code == 201


async def test_same_key_at_the_same_time_on_two_instances_has_one_effect(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=1_000)
    merchant = await bank.merchant("EUR")
    responses = await asyncio.gather(
        *(bank.pay(merchant, account["id"], 10, key="same-key", instance=i % 2) for i in range(20))
    )
    created = [r for r in responses if r.status_code == 201]
    assert created and {r.json()["id"] for r in created} == {created[0].json()["id"]}
    for response in responses:
        assert response.status_code == 201 or response.json()["type"] == "idempotency-key-in-progress"
    assert sum(1 for r in created if "idempotent-replayed" not in r.headers) <= 1
    assert await bank.balance(account["id"]) == 990
    replay = await bank.pay(merchant, account["id"], 10, key="same-key")
    assert replay.status_code == 201 and replay.json()["id"] == created[0].json()["id"]


async def test_payment_errors(bank: Bank) -> None:
    customer, account = await bank.funded_account("EUR", deposit=1_000)
    merchant = await bank.merchant("EUR")
    body = {"account_id": account["id"], "amount": 10, "currency": "EUR"}
    client = bank.transactions[0]
    problem(
        await client.post("/api/v1/payments", json=body, headers=bank.auth(merchant["api_key"])),
        400,
        "idempotency-key-required",
    )
    problem(await client.post("/api/v1/payments", json=body, headers={"Idempotency-Key": "x"}), 401)
    problem(await client.post("/api/v1/payments", json=body, headers=bank.auth("nbm_forged", "x")), 401)
    problem(await client.post("/api/v1/payments", json=body, headers=bank.auth(customer["api_key"], "x")), 403)
    problem(await client.post("/api/v1/payments", json=body, headers=bank.auth(bank.services.admin_token, "x")), 403)
    problem(await bank.pay(merchant, account["id"], 10, currency="USD"), 422, "currency-mismatch")
    problem(await bank.pay(merchant, str(uuid.uuid4()), 10), 404, "account-not-found")
    problem(await bank.pay(merchant, account["id"], 1_001), 402, "insufficient-funds")
    gbp_merchant = await bank.merchant("SEK")
    problem(await bank.pay(gbp_merchant, account["id"], 10), 422, "fx-rate-unavailable")
    for bad in (10.5, "10", True, 0, -1, 1_000_000_000_001, None):
        problem(await bank.pay(merchant, account["id"], bad), 422, "validation-error")  # type: ignore[arg-type]
    for bad_currency in ("eur", "EURO", "ABC", 978):
        problem(await bank.pay(merchant, account["id"], 10, currency=bad_currency), 422)  # type: ignore[arg-type]
    problem(await bank.pay(merchant, "not-a-uuid", 10), 422)
    problem(
        await client.post(
            "/api/v1/payments",
            content=b"{not json",
            headers={**bank.auth(merchant["api_key"], "bad-json"), "Content-Type": "application/json"},
        ),
        400,
    )
    problem(
        await client.post(
            "/api/v1/payments", json={**body, "reference": "x" * 70_000}, headers=bank.auth(merchant["api_key"], "big")
        ),
        413,
        "payload-too-large",
    )
    problem(await client.post("/api/v1/payments", json=body, headers=bank.auth(merchant["api_key"], "k" * 256)), 400)
    assert await bank.balance(account["id"]) == 1_000


@pytest.mark.parametrize(
    ("merchant_currency", "account_currency", "rate", "amount"),
    [
        ("EUR", "USD", "1.0850", 1_001),  # 1086.085 → 1086
        ("EUR", "USD", "1.5", 1),  # 1.5 → 2 (half to even)
        ("EUR", "USD", "2.5", 1),  # 2.5 → 2 (half to even)
        ("USD", "JPY", "151.37", 1_999),  # cents → yen
        ("JPY", "KWD", "0.002031", 12_345),  # yen → fils
        ("KWD", "EUR", "2.98765", 1_234_567),  # fils → cents
    ],
)
async def test_cross_currency_payment_converts_half_even_and_keeps_its_rate(
    bank: Bank, merchant_currency: str, account_currency: str, rate: str, amount: int
) -> None:
    expected = convert(amount, merchant_currency, account_currency, Decimal(rate))
    _, account = await bank.funded_account(account_currency, deposit=10 * expected + 10)
    merchant = await bank.merchant(merchant_currency)
    await bank.set_rate(merchant_currency, account_currency, rate)
    response = await bank.pay(merchant, account["id"], amount)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["debited_amount"] == expected
    assert payment["account_currency"] == account_currency and payment["currency"] == merchant_currency
    assert Decimal(payment["fx_rate"]) == Decimal(rate)
    assert await bank.balance(account["id"]) == 10 * expected + 10 - expected
    # A later rate change never alters a payment made.
    await bank.set_rate(merchant_currency, account_currency, "7")
    read = await bank.transactions[1].get(f"/api/v1/payments/{payment['id']}", headers=bank.admin)
    assert read.json()["debited_amount"] == expected and Decimal(read.json()["fx_rate"]) == Decimal(rate)
    # A full refund gives back exactly what was debited.
    refund = await bank.refund(merchant, payment["id"], amount)
    assert refund.status_code == 201 and refund.json()["credited_amount"] == expected
    assert await bank.balance(account["id"]) == 10 * expected + 10


async def test_amount_that_converts_to_nothing_is_refused(bank: Bank) -> None:
    _, account = await bank.funded_account("JPY", deposit=1_000)
    merchant = await bank.merchant("USD")
    await bank.set_rate("USD", "JPY", "0.4")
    problem(await bank.pay(merchant, account["id"], 1), 422)  # 0.004 yen
    assert await bank.balance(account["id"]) == 1_000


async def test_refunds_partial_full_over_and_foreign(bank: Bank) -> None:
    _, account = await bank.funded_account("USD", deposit=100_000)
    merchant = await bank.merchant("EUR")
    await bank.set_rate("EUR", "USD", "1.0850")
    payment = (await bank.pay(merchant, account["id"], 1_001)).json()
    assert payment["debited_amount"] == 1_086
    first = await bank.refund(merchant, payment["id"], 333, key="r1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["payment_id"] == payment["id"] and body["amount"] == 333 and body["currency"] == "EUR"
    assert body["credited_amount"] == 361  # 1086 × 333 / 1001 = 361.3…
    replay = await bank.refund(merchant, payment["id"], 333, key="r1", instance=1)
    assert replay.json() == body and replay.headers["idempotent-replayed"] == "true"
    problem(await bank.refund(merchant, payment["id"], 669), 422, "refund-exceeds-payment")
    other = await bank.merchant("EUR")
    problem(await bank.refund(other, payment["id"], 1), 404, "payment-not-found")
    problem(await bank.refund(merchant, str(uuid.uuid4()), 1), 404, "payment-not-found")
    customer_key = (await bank.customer())["api_key"]
    problem(
        await bank.transactions[0].post(
            f"/api/v1/payments/{payment['id']}/refunds", json={"amount": 1}, headers=bank.auth(customer_key, "x")
        ),
        403,
    )
    problem(await bank.refund(merchant, payment["id"], 0), 422)
    rest = await bank.refund(merchant, payment["id"], 668)
    assert rest.status_code == 201 and rest.json()["credited_amount"] == 1_086 - 361
    assert await bank.balance(account["id"]) == 100_000
    read = await bank.transactions[0].get(f"/api/v1/payments/{payment['id']}", headers=bank.admin)
    assert read.json()["refunded_amount"] == 1_001
    problem(await bank.refund(merchant, payment["id"], 1), 422, "refund-exceeds-payment")
    me = await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(merchant["api_key"]))
    assert me.json()["settlement_balance"] == 0


async def test_refund_the_merchant_cannot_cover_is_402_and_moves_nothing(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=1_000)
    merchant = await bank.merchant("EUR")
    payment = (await bank.pay(merchant, account["id"], 600)).json()
    # The merchant was paid out (money left its settlement account for its own bank): as the ledger
    # would record it, a balanced journal entry.
    conn = await asyncpg.connect(bank.services.database_url)
    try:
        async with conn.transaction():
            settlement = await conn.fetchval(
                "SELECT settlement_account_id FROM merchant WHERE id = $1", uuid.UUID(merchant["id"])
            )
            entry = uuid.uuid4()
            await conn.execute("INSERT INTO journal_entry (id, kind) VALUES ($1, 'payout')", entry)
            await conn.execute(
                "INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES"
                " ($1, $2, 'EUR', -500), ($1, system_account('payout', 'EUR', 2::smallint), 'EUR', 500)",
                entry,
                settlement,
            )
            await conn.execute("UPDATE account SET balance = balance - 500 WHERE id = $1", settlement)
    finally:
        await conn.close()
    problem(await bank.refund(merchant, payment["id"], 101), 402, "insufficient-funds")
    assert await bank.balance(account["id"]) == 400
    assert (await bank.refund(merchant, payment["id"], 100)).status_code == 201
    assert await bank.balance(account["id"]) == 500


async def test_payment_list_pages_newest_first_and_only_ones_own(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    other = await bank.merchant("EUR")
    made = [(await bank.pay(merchant, account["id"], 10 + i)).json()["id"] for i in range(7)]
    await bank.pay(other, account["id"], 5)
    headers = bank.auth(merchant["api_key"])
    seen: list[str] = []
    cursor = None
    for _ in range(50):  # the list reads from the replica: wait until it has caught up
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            response = await bank.transactions[0].get("/api/v1/payments", params=params, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 3
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if len(seen) == 7:
            break
        await asyncio.sleep(0.1)
    assert seen == list(reversed(made))
    admin = await bank.transactions[1].get("/api/v1/payments", params={"limit": 200}, headers=bank.admin)
    assert admin.status_code == 200 and len(admin.json()["items"]) >= 8
    customer_key = (await bank.customer())["api_key"]
    problem(await bank.transactions[0].get("/api/v1/payments", headers=bank.auth(customer_key)), 403)
    problem(
        await bank.transactions[0].get("/api/v1/payments", params={"cursor": "garbage!"}, headers=headers),
        400,
        "invalid-cursor",
    )
    for limit in (0, 201, "x"):
        problem(await bank.transactions[0].get("/api/v1/payments", params={"limit": limit}, headers=headers), 422)


async def test_payments_and_refunds_crossing_never_fail_or_lose_money(bank: Bank) -> None:
    """A payment locks customer then settlement, a refund the other way round: crossing ones may
    deadlock in PostgreSQL, and the service retries them (same key), so callers never see a 5xx."""
    _, account = await bank.funded_account("EUR", deposit=100_000)
    merchant = await bank.merchant("EUR")
    earlier = [(await bank.pay(merchant, account["id"], 100)).json() for _ in range(40)]
    calls = [bank.refund(merchant, payment["id"], 100, instance=i % 2) for i, payment in enumerate(earlier)]
    calls += [bank.pay(merchant, account["id"], 100, instance=i % 2) for i in range(40)]
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [201] * 80, [r.text for r in responses if r.status_code != 201]
    # 40 paid and refunded, 40 more paid: 100_000 - 40 × 100
    assert await bank.balance(account["id"]) == 96_000
    me = await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(merchant["api_key"]))
    assert me.json()["settlement_balance"] == 4_000


async def test_text_the_database_cannot_store_and_amounts_that_overflow_are_4xx(bank: Bank) -> None:
    _, account = await bank.funded_account("JPY", deposit=1_000)
    merchant = await bank.merchant("BHD")
    problem(await bank.pay(merchant, account["id"], 10, reference="nul\x00byte"), 422, "validation-error")
    await bank.set_rate("BHD", "JPY", "1000000000")
    # 10^12 fils × 10^9 yen per dinar ÷ 1000 = 10^18 yen: fits a bigint, far beyond the balance.
    problem(await bank.pay(merchant, account["id"], 1_000_000_000_000), 402, "insufficient-funds")
    customer = await bank.customer()
    clf = await bank.account(customer["id"], "CLF", deposit=5)
    await bank.set_rate("BHD", "CLF", "1000000000")
    # 10^12 fils × 10^9 × 10 (CLF has 4 decimals, BHD 3) = 10^22 ten-thousandths: past any bigint.
    problem(await bank.pay(merchant, clf["id"], 1_000_000_000_000), 422, "amount-too-large")
    assert await bank.balance(account["id"]) == 1_000 and await bank.balance(clf["id"]) == 5
    problem(
        await bank.accounts.post("/api/v1/customers", json={"name": "a\x00b", "country": "DE"}, headers=bank.admin), 422
    )
