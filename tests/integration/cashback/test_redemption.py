"""Redemption end to end: the cashback balance is debited once per Idempotency-Key, cashback.redeemed
leaves through the outbox to the broker, and the redemption completes on redemption.completed (which
the accounts service publishes after crediting the bank account; here the test plays that part)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from bank_events import open_account, payment_completed, register_merchant, set_offer, wait_balance
from cashback_harness import ADMIN, Env, auth, eventually, now_rfc3339

pytestmark = [pytest.mark.integration]


async def test_redemption_end_to_end(env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient) -> None:
    redeemed_events = await env.bus.listen("cashback.redeemed")
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 1000)
    await env.bus.publish("payment.completed", payment_completed(customer, merchant, 5_000))
    await wait_balance(cashback, customer, 500)

    path = f"/api/v1/cashback/accounts/{customer.account_id}/redemptions"
    headers = {**auth(customer.token), "Idempotency-Key": f"redeem-{uuid.uuid4()}"}
    first = await cashback.post(path, json={"amount": 300}, headers=headers)
    assert first.status_code == 202, first.text
    redemption = first.json()
    assert (redemption["amount"], redemption["status"], redemption["currency"]) == (300, "pending", "EUR")
    replay = await cashback.post(path, json={"amount": 300}, headers=headers)
    assert (replay.status_code, replay.json(), replay.headers.get("idempotent-replayed")) == (202, redemption, "true")
    reused = await cashback.post(path, json={"amount": 200}, headers=headers)
    assert (reused.status_code, reused.json()["type"]) == (409, "idempotency-key-reused")
    await wait_balance(cashback, customer, 200, timeout_s=1)

    # The event reached the broker, once, with what the accounts service needs.
    event = await asyncio.wait_for(redeemed_events.get(), timeout=5)
    assert event["type"] == "cashback.redeemed"
    assert {k: event["data"][k] for k in ("redemption_id", "account_id", "customer_id", "amount", "currency")} == {
        "redemption_id": redemption["id"],
        "account_id": str(customer.account_id),
        "customer_id": str(customer.customer_id),
        "amount": 300,
        "currency": "EUR",
    }
    await asyncio.sleep(0.3)
    assert redeemed_events.empty()

    # The accounts service credits the bank account and says so.
    completed = {
        "redemption_id": redemption["id"],
        "account_id": str(customer.account_id),
        "amount": 300,
        "completed_at": now_rfc3339(),
    }
    await env.bus.publish("redemption.completed", completed)

    async def is_completed() -> dict | None:
        body = await cashback.get(f"/api/v1/cashback/redemptions/{redemption['id']}", headers=auth(customer.token))
        return body.json() if body.json().get("status") == "completed" else None

    done = await eventually(is_completed, timeout_s=5)
    assert done["completed_at"] and done["amount"] == 300
    other = await open_account(env)
    hidden = await cashback.get(f"/api/v1/cashback/redemptions/{redemption['id']}", headers=auth(other.token))
    assert hidden.status_code == 404
    assert (await cashback.get(f"/api/v1/cashback/redemptions/{redemption['id']}", headers=ADMIN)).status_code == 200


async def test_redemption_refusals(env: Env, cashback: httpx.AsyncClient) -> None:
    customer = await open_account(env)
    other = await open_account(env)
    await wait_balance(cashback, customer, 0)
    await wait_balance(cashback, other, 0)
    path = f"/api/v1/cashback/accounts/{customer.account_id}/redemptions"

    def key() -> dict[str, str]:
        return {"Idempotency-Key": str(uuid.uuid4())}

    too_much = await cashback.post(path, json={"amount": 1}, headers={**auth(customer.token), **key()})
    assert (too_much.status_code, too_much.json()["type"]) == (402, "insufficient-cashback")
    missing_key = await cashback.post(path, json={"amount": 1}, headers=auth(customer.token))
    assert (missing_key.status_code, missing_key.json()["type"]) == (400, "idempotency-key-required")
    for bad in ({"amount": 0}, {"amount": -5}, {"amount": 1.5}, {"amount": "10"}, {"amount": True}, {}):
        response = await cashback.post(path, json=bad, headers={**auth(customer.token), **key()})
        assert response.status_code == 422, (bad, response.text)
    not_json = await cashback.post(
        path, content=b"{", headers={**auth(customer.token), **key(), "content-type": "application/json"}
    )
    assert not_json.status_code in (400, 422)
    someone_elses = await cashback.post(path, json={"amount": 1}, headers={**auth(other.token), **key()})
    assert (someone_elses.status_code, someone_elses.json()["type"]) == (404, "cashback-account-not-found")
    admin = await cashback.post(path, json={"amount": 1}, headers={**ADMIN, **key()})
    assert admin.status_code == 403
    unknown = await cashback.get(f"/api/v1/cashback/redemptions/{uuid.uuid4()}", headers=ADMIN)
    assert unknown.status_code == 404


async def test_concurrent_redemptions_never_overdraw(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 1000)
    await env.bus.publish("payment.completed", payment_completed(customer, merchant, 10_000))
    await wait_balance(cashback, customer, 1000)
    path = f"/api/v1/cashback/accounts/{customer.account_id}/redemptions"
    answers = await asyncio.gather(
        *(
            cashback.post(path, json={"amount": 300}, headers={**auth(customer.token), "Idempotency-Key": str(i)})
            for i in range(6)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 202, 202, 402, 402, 402]
    await wait_balance(cashback, customer, 100, timeout_s=1)
