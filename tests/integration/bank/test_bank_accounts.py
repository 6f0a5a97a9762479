"""The accounts service through its HTTP API: customers, accounts, deposits, FX rates, merchants, keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bank_api import ADMIN_TOKEN, Bank, problem

pytestmark = pytest.mark.integration


async def test_customer_account_deposit_and_owner_read(bank: Bank) -> None:
    customer = await bank.customer(name="Zoë Ωmega 山田", country="JP")
    assert customer["name"] == "Zoë Ωmega 山田"
    assert customer["api_key"].startswith("nbc_")
    response = await bank.accounts.post(
        "/api/v1/accounts", json={"customer_id": customer["id"], "currency": "JPY"}, headers=bank.admin
    )
    assert response.status_code == 201
    account = response.json()
    assert account["balance"] == 0 and account["currency"] == "JPY" and account["customer_id"] == customer["id"]

    deposit = await bank.deposit(account["id"], 5_000, "JPY")
    assert deposit["balance"] == 5_000 and deposit["amount"] == 5_000 and deposit["account_id"] == account["id"]

    own = await bank.accounts.get(f"/api/v1/accounts/{account['id']}", headers=bank.auth(customer["api_key"]))
    assert own.status_code == 200 and own.json()["balance"] == 5_000


async def test_deposit_rules(bank: Bank) -> None:
    _, account = await bank.funded_account("EUR")
    path = f"/api/v1/accounts/{account['id']}/deposits"
    headers = {**bank.admin, "Idempotency-Key": "dep-1"}
    problem(
        await bank.accounts.post(path, json={"amount": 100, "currency": "EUR"}, headers=bank.admin),
        400,
        "idempotency-key-required",
    )
    problem(
        await bank.accounts.post(path, json={"amount": 100, "currency": "USD"}, headers=headers),
        422,
        "currency-mismatch",
    )
    first = await bank.accounts.post(path, json={"amount": 100, "currency": "EUR"}, headers=headers)
    assert first.status_code == 201
    again = await bank.accounts.post(path, json={"amount": 100, "currency": "EUR"}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    problem(
        await bank.accounts.post(path, json={"amount": 101, "currency": "EUR"}, headers=headers),
        409,
        "idempotency-key-reused",
    )
    assert await bank.balance(account["id"]) == 100
    missing = f"/api/v1/accounts/{uuid.uuid4()}/deposits"
    problem(
        await bank.accounts.post(
            missing, json={"amount": 1, "currency": "EUR"}, headers={**bank.admin, "Idempotency-Key": "dep-2"}
        ),
        404,
        "account-not-found",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 10.0, "currency": "EUR"},
        {"amount": "10", "currency": "EUR"},
        {"amount": True, "currency": "EUR"},
        {"amount": 0, "currency": "EUR"},
        {"amount": -5, "currency": "EUR"},
        {"amount": 1_000_000_000_001, "currency": "EUR"},
        {"amount": 10, "currency": "eur"},
        {"amount": 10, "currency": "ABC"},
        {"amount": 10},
        {"currency": "EUR"},
    ],
)
async def test_deposit_bad_input_is_422(bank: Bank, body: dict) -> None:
    _, account = await bank.funded_account("EUR")
    response = await bank.accounts.post(
        f"/api/v1/accounts/{account['id']}/deposits",
        json=body,
        headers={**bank.admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    problem(response, 422, "validation-error")
    assert response.json()["errors"]
    assert await bank.balance(account["id"]) == 0


async def test_bad_json_oversized_body_and_malformed_ids(bank: Bank) -> None:
    response = await bank.accounts.post(
        "/api/v1/customers", content=b'{"name": "x", ', headers={**bank.admin, "Content-Type": "application/json"}
    )
    problem(response, 400)
    big = {"name": "x" * 70_000, "country": "DE"}
    problem(await bank.accounts.post("/api/v1/customers", json=big, headers=bank.admin), 413, "payload-too-large")
    malformed = await bank.accounts.get("/api/v1/accounts/not-a-uuid", headers=bank.admin)
    assert malformed.status_code in (404, 422)
    problem(await bank.accounts.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=bank.admin), 404, "account-not-found")


async def test_customer_and_account_validation(bank: Bank) -> None:
    for body in (
        {"name": "A", "country": "XX"},
        {"name": "A", "country": "de"},
        {"name": "", "country": "DE"},
        {"name": "A", "country": "EU"},
        {"name": 5, "country": "DE"},
    ):
        problem(await bank.accounts.post("/api/v1/customers", json=body, headers=bank.admin), 422)
    problem(
        await bank.accounts.post(
            "/api/v1/accounts", json={"customer_id": str(uuid.uuid4()), "currency": "EUR"}, headers=bank.admin
        ),
        404,
        "customer-not-found",
    )
    customer = await bank.customer()
    problem(
        await bank.accounts.post(
            "/api/v1/accounts", json={"customer_id": customer["id"], "currency": "XYZ"}, headers=bank.admin
        ),
        422,
    )


async def test_keys_and_cross_tenant_refusals(bank: Bank) -> None:
    alice, alice_account = await bank.funded_account("EUR")
    bob, _ = await bank.funded_account("EUR")
    merchant = await bank.merchant()
    path = f"/api/v1/accounts/{alice_account['id']}"
    problem(await bank.accounts.get(path), 401, "unauthorized")
    problem(await bank.accounts.get(path, headers=bank.auth("nbc_not-a-real-key")), 401, "unauthorized")
    problem(await bank.accounts.get(path, headers={"Authorization": "Basic abc"}), 401)
    # Bob may not learn that Alice's account exists; a merchant key is the wrong kind of key.
    problem(await bank.accounts.get(path, headers=bank.auth(bob["api_key"])), 404)
    problem(await bank.accounts.get(path, headers=bank.auth(merchant["api_key"])), 403, "forbidden")
    # Only the back office creates customers and accounts and deposits money.
    problem(
        await bank.accounts.post(
            "/api/v1/customers", json={"name": "Eve", "country": "DE"}, headers=bank.auth(alice["api_key"])
        ),
        403,
    )
    problem(
        await bank.accounts.post(
            "/api/v1/accounts",
            json={"customer_id": alice["id"], "currency": "EUR"},
            headers=bank.auth(merchant["api_key"]),
        ),
        403,
    )
    problem(
        await bank.accounts.post(
            f"{path}/deposits", json={"amount": 5, "currency": "EUR"}, headers=bank.auth(alice["api_key"], "k")
        ),
        403,
    )
    problem(await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(alice["api_key"])), 403)
    problem(
        await bank.accounts.put("/api/v1/fx-rates/EUR/USD", json={"rate": "2"}, headers=bank.auth(merchant["api_key"])),
        403,
    )


async def test_fx_rates(bank: Bank) -> None:
    await bank.set_rate("GBP", "JPY", "190.1250")
    response = await bank.accounts.get("/api/v1/fx-rates/GBP/JPY", headers=bank.admin)
    assert response.status_code == 200
    body = response.json()
    assert body["base"] == "GBP" and body["quote"] == "JPY" and body["rate"] == "190.125"
    assert body["updated_at"].endswith(("Z", "+00:00"))
    customer = await bank.customer()
    assert (
        await bank.accounts.get("/api/v1/fx-rates/GBP/JPY", headers=bank.auth(customer["api_key"]))
    ).status_code == 200
    problem(await bank.accounts.get("/api/v1/fx-rates/GBP/JPY"), 401)
    problem(await bank.accounts.get("/api/v1/fx-rates/CHF/KWD", headers=bank.admin), 404, "fx-rate-not-found")
    for rate in ("0", "-1", "abc", "NaN", "Infinity", 1.5, 2, "1e400"):
        problem(await bank.accounts.put("/api/v1/fx-rates/GBP/JPY", json={"rate": rate}, headers=bank.admin), 422)
    problem(await bank.accounts.put("/api/v1/fx-rates/EUR/EUR", json={"rate": "1"}, headers=bank.admin), 422)
    problem(await bank.accounts.put("/api/v1/fx-rates/EUR/ABC", json={"rate": "1"}, headers=bank.admin), 422)
    problem(await bank.accounts.get("/api/v1/fx-rates/eur/usd", headers=bank.admin), 422)


async def test_merchant_onboarding_and_me(bank: Bank) -> None:
    merchant = await bank.merchant(currency="KWD", name="Souq Al-Mubarakiya", country="KW")
    assert merchant["api_key"].startswith("nbm_") and merchant["currency"] == "KWD"
    me = await bank.accounts.get("/api/v1/merchants/me", headers=bank.auth(merchant["api_key"]))
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == merchant["id"] and body["settlement_balance"] == 0 and body["currency"] == "KWD"
    assert "api_key" not in body
    problem(await bank.accounts.get("/api/v1/merchants/me"), 401)
    problem(await bank.accounts.get("/api/v1/merchants/me", headers=bank.admin), 403)
    for bad in (
        {"name": "M", "country": "DE", "currency": "EURO"},
        {"name": "M", "country": "ZZ", "currency": "EUR"},
        {"country": "DE", "currency": "EUR"},
    ):
        problem(await bank.accounts.post("/api/v1/merchants", json=bad), 422)


async def test_onboarding_is_rate_limited_per_client_address(bank: Bank) -> None:
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    body = {"name": "Flood", "country": "FR", "currency": "EUR"}
    statuses = []
    for _ in range(22):  # the test services allow 20 a minute
        response = await bank.accounts.post("/api/v1/merchants", json=body, headers={"X-Forwarded-For": address})
        statuses.append(response.status_code)
    assert statuses.count(201) <= 20 and statuses[-1] == 429
    limited = await bank.accounts.post("/api/v1/merchants", json=body, headers={"X-Forwarded-For": address})
    problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1
    # Another address is not affected; a forged first entry does not escape the limit.
    other = await bank.accounts.post("/api/v1/merchants", json=body, headers={"X-Forwarded-For": "198.51.100.7"})
    assert other.status_code == 201
    forged = await bank.accounts.post(
        "/api/v1/merchants", json=body, headers={"X-Forwarded-For": f"203.0.113.9, {address}"}
    )
    assert forged.status_code == 429


async def test_onboarding_limit_admits_when_retry_after_says(bank: Bank) -> None:
    """The limit's own function at chosen moments: refusals are not counted, and Retry-After is the
    first whole second at which the address is admitted (a second earlier it is still refused)."""
    import asyncpg

    conn = await asyncpg.connect(bank.services.database_url)
    base = datetime(2001, 1, 5, 12, 0, 10, tzinfo=UTC)  # in the past: its clean-up deletes nothing current

    async def admit(address: str, at_s: float, limit: int = 20) -> int:
        moment = base + timedelta(seconds=at_s)
        return await conn.fetchval("SELECT onboarding_admit($1, $2, $3)", address, limit, moment)

    try:
        # A full minute: 20 admitted at 12:00:10, refused at 12:00:50 until a second past 12:01:00.
        address = f"full-{uuid.uuid4()}"
        assert [await admit(address, 0) for _ in range(20)] == [0] * 20
        assert [await admit(address, 40) for _ in range(50)] == [11] * 50  # 50 refusals, none counted
        assert await admit(address, 50) == 1  # 12:01:00: the previous minute still weighs 20
        assert await admit(address, 51) == 0
        # The sliding window: at 12:01:10 the previous minute's 20 weigh floor(20·50/60) = 16, so 4 are
        # admitted; the 5th is refused until floor(20·(60 − s)/60) < 16, i.e. s > 12: at 12:01:13.
        address = f"slide-{uuid.uuid4()}"
        assert [await admit(address, 0) for _ in range(20)] == [0] * 20
        assert [await admit(address, 60) for _ in range(5)] == [0, 0, 0, 0, 3]
        assert await admit(address, 62) == 1
        assert await admit(address, 63) == 0
        # Another address is not affected.
        assert await admit(f"other-{uuid.uuid4()}", 40) == 0
        # A limit of 0 switches onboarding off: refused, never a division by zero.
        assert await admit(f"off-{uuid.uuid4()}", 0, limit=0) == 60
    finally:
        await conn.close()


async def test_introspection_is_internal_and_admin_only(bank: Bank) -> None:
    customer = await bank.customer()
    merchant = await bank.merchant()
    url = "/internal/introspect"
    problem(await bank.accounts.post(url, json={"tokens": [customer["api_key"]]}), 401)
    problem(
        await bank.accounts.post(url, json={"tokens": [customer["api_key"]]}, headers=bank.auth(merchant["api_key"])),
        401,
    )
    answer = (await bank.accounts.post(url, json={"tokens": [customer["api_key"]]}, headers=bank.admin)).json()
    assert answer == {"answers": [{"active": True, "kind": "customer", "sub": customer["id"]}]}
    spec = (await bank.accounts.get("/openapi.json")).json()
    assert not any(path.startswith("/internal") for path in spec["paths"])


async def test_introspection_answers_many_keys_in_the_order_asked(bank: Bank) -> None:
    customers = [await bank.customer() for _ in range(3)]
    merchant = await bank.merchant()
    tokens = [
        customers[0]["api_key"],
        "nbm_nope",
        merchant["api_key"],
        customers[1]["api_key"],
        ADMIN_TOKEN,
        "not-a-key",
        "nbc_" + "x" * 300,
        customers[2]["api_key"],
        customers[0]["api_key"],  # twice in one request
    ]
    answer = (await bank.accounts.post("/internal/introspect", json={"tokens": tokens}, headers=bank.admin)).json()
    refused = {"active": False}
    assert answer == {
        "answers": [
            {"active": True, "kind": "customer", "sub": customers[0]["id"]},
            refused,
            {"active": True, "kind": "merchant", "sub": merchant["id"]},
            {"active": True, "kind": "customer", "sub": customers[1]["id"]},
            {"active": True, "kind": "admin"},
            refused,
            refused,
            {"active": True, "kind": "customer", "sub": customers[2]["id"]},
            {"active": True, "kind": "customer", "sub": customers[0]["id"]},
        ]
    }


@pytest.mark.parametrize(
    "body",
    [{"tokens": []}, {"tokens": ["nbc_x"] * 501}, {"tokens": [1]}, {"tokens": "nbc_x"}, {"token": "nbc_x"}, {}],
    ids=["none", "too-many", "not-a-string", "not-a-list", "old-form", "empty"],
)
async def test_introspection_refuses_a_bad_request_with_a_problem(bank: Bank, body: dict[str, Any]) -> None:
    problem(await bank.accounts.post("/internal/introspect", json=body, headers=bank.admin), 422)


async def test_stored_answers_are_kept_24_hours_then_pruned(bank: Bank) -> None:
    import asyncpg

    from newbank.accounts.queries import PRUNE_IDEMPOTENCY_KEYS

    scope = f"test:{uuid.uuid4()}"
    conn = await asyncpg.connect(bank.services.database_url)
    try:
        await conn.execute(
            "INSERT INTO idempotency_key (scope, key, request_hash, status_code, response, created_at) VALUES"
            " ($1, 'old', 'h', 201, '{}', now() - interval '49 hours'),"
            " ($1, 'day', 'h', 201, '{}', now() - interval '23 hours'),"
            " ($1, 'new', 'h', 201, '{}', now())",
            scope,
        )
        await conn.execute(PRUNE_IDEMPOTENCY_KEYS, 48, 5_000)
        kept = await conn.fetch("SELECT key FROM idempotency_key WHERE scope = $1 ORDER BY key", scope)
        assert [row["key"] for row in kept] == ["day", "new"]
    finally:
        await conn.execute("DELETE FROM idempotency_key WHERE scope = $1", scope)
        await conn.close()
