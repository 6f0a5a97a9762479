"""The Bank's rows of API.md through the ingress (real HAProxy with the runtime's routing)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from bank_api import Bank, BankServices, problem

from newbank.runtime import HAProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def ingress(haproxy: HAProxy, bank_services: BankServices) -> AsyncIterator[httpx.AsyncClient]:
    # The session's HAProxy is shared with other test modules: take these instances out again at the
    # end, or later modules' requests are round-robined onto services with another admin key.
    servers = [("accounts", "bank-accounts-0", bank_services.accounts.port)]
    servers += [
        ("transactions", f"bank-transactions-{i}", instance.port)
        for i, instance in enumerate(bank_services.transactions)
    ]
    for backend, name, port in servers:
        haproxy.add_server(backend, name, port)
    try:
        async with httpx.AsyncClient(base_url=haproxy.url, timeout=30) as client:
            yield client
    finally:
        for backend, name, _ in servers:
            haproxy.remove_server(backend, name)


async def test_every_bank_row_through_the_ingress(ingress: httpx.AsyncClient, bank: Bank) -> None:
    admin = bank.admin
    merchant = await ingress.post("/api/v1/merchants", json={"name": "Via Ingress", "country": "NL", "currency": "EUR"})
    assert merchant.status_code == 201, merchant.text
    merchant_key = merchant.json()["api_key"]
    customer = (await ingress.post("/api/v1/customers", json={"name": "Ida", "country": "NL"}, headers=admin)).json()
    account = await ingress.post(
        "/api/v1/accounts", json={"customer_id": customer["id"], "currency": "USD"}, headers=admin
    )
    assert account.status_code == 201
    account_id = account.json()["id"]
    deposit = await ingress.post(
        f"/api/v1/accounts/{account_id}/deposits",
        json={"amount": 10_000, "currency": "USD"},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201 and deposit.json()["balance"] == 10_000
    assert (await ingress.put("/api/v1/fx-rates/EUR/USD", json={"rate": "1.1"}, headers=admin)).status_code == 200
    rate = await ingress.get("/api/v1/fx-rates/EUR/USD", headers=bank.auth(customer["api_key"]))
    assert rate.json()["rate"] == "1.1"
    payment = await ingress.post(
        "/api/v1/payments",
        json={"account_id": account_id, "amount": 1_000, "currency": "EUR"},
        headers=bank.auth(merchant_key, "ingress-1"),
    )
    assert payment.status_code == 201 and payment.json()["debited_amount"] == 1_100
    payment_id = payment.json()["id"]
    read = await ingress.get(f"/api/v1/payments/{payment_id}", headers=bank.auth(customer["api_key"]))
    assert read.status_code == 200
    listed = await ingress.get("/api/v1/payments", headers=bank.auth(merchant_key))
    assert listed.status_code == 200
    refund = await ingress.post(
        f"/api/v1/payments/{payment_id}/refunds", json={"amount": 1_000}, headers=bank.auth(merchant_key, "ingress-r1")
    )
    assert refund.status_code == 201 and refund.json()["credited_amount"] == 1_100
    me = await ingress.get("/api/v1/merchants/me", headers=bank.auth(merchant_key))
    assert me.json()["settlement_balance"] == 0
    own = await ingress.get(f"/api/v1/accounts/{account_id}", headers=bank.auth(customer["api_key"]))
    assert own.json()["balance"] == 10_000
    # The introspection endpoint is internal: the ingress does not route it.
    internal = await ingress.post("/internal/introspect", json={"tokens": [merchant_key]}, headers=admin)
    assert internal.status_code in (403, 404) and "active" not in internal.text


async def test_onboarding_limit_counts_the_address_haproxy_saw(ingress: httpx.AsyncClient) -> None:
    """A client forging X-Forwarded-For still counts as its real address (127.0.0.1 here)."""
    statuses = []
    for i in range(25):  # the test services allow 20 a minute per address
        response = await ingress.post(
            "/api/v1/merchants",
            json={"name": f"Forger {i}", "country": "DE", "currency": "EUR"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        )
        statuses.append(response.status_code)
    assert 429 in statuses and statuses.count(201) <= 20
    problem(response, 429, "rate-limited")
