"""The cashback story through an ingress, with nothing simulated: merchant onboarding, an offer,
payments, refunds and a redemption go through the public API; the events through the outboxes, the
broker and the inboxes. Run by test_end_to_end.py (services as processes behind the test HAProxy) and
test_newbank_up.py (the platform of ``newbank up``)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import httpx
from cashback_harness import eventually


def key(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}


async def _created(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


async def cashback_story(api: httpx.AsyncClient, admin_token: str) -> None:
    """Onboarding, offer, payments, a partial and a full refund, a redemption; asserts every outcome."""
    ADMIN = {"Authorization": f"Bearer {admin_token}"}
    customer = await _created(await api.post("/api/v1/customers", json={"name": "Zoë", "country": "NL"}, headers=ADMIN))
    account = await _created(
        await api.post("/api/v1/accounts", json={"customer_id": customer["id"], "currency": "EUR"}, headers=ADMIN)
    )
    await _created(
        await api.post(f"/api/v1/accounts/{account['id']}/deposits", json={"amount": 100_000, "currency": "EUR"},
                       headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())})
    )  # fmt: skip
    merchant = await _created(
        await api.post(
            "/api/v1/merchants",
            json={"name": "Ōsaka Books", "country": "DE", "currency": "EUR", "category": "books"},
            headers={"X-Forwarded-For": f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"},
        )
    )
    customer_auth = {"Authorization": f"Bearer {customer['api_key']}"}

    # merchant.registered made it a partner store on both partners instances.
    async def partner() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/partners/{merchant['id']}")
        return response.json() if response.status_code == 200 else None

    store = await eventually(partner, timeout_s=5)
    assert (store["name"], store["offer"]) == ("Ōsaka Books", None)
    offer = await api.put(
        f"/api/v1/partners/{merchant['id']}/offer", json={"rate_bps": 250}, headers=key(merchant["api_key"])
    )
    assert offer.status_code == 200, offer.text
    changed_at = time.monotonic()

    # Visible through the ingress within 2 s, whichever partners instance answers (round robin).
    async def offer_everywhere() -> bool:
        answers = [await api.get(f"/api/v1/partners/{merchant['id']}") for _ in range(4)]
        return all((a.json().get("offer") or {}).get("rate_bps") == 250 for a in answers)

    await eventually(offer_everywhere, timeout_s=2.0)
    assert time.monotonic() - changed_at < 2.0

    # The account is known to cashback (account.opened) before any cashback.
    async def cashback_account() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/cashback/accounts/{account['id']}", headers=customer_auth)
        return response.json() if response.status_code == 200 else None

    assert (await eventually(cashback_account, timeout_s=5))["balance"] == 0

    async def pay(amount: int) -> tuple[dict[str, Any], float]:
        body = {"account_id": account["id"], "amount": amount, "currency": "EUR"}
        paid_at = time.monotonic()
        return await _created(await api.post("/api/v1/payments", json=body, headers=key(merchant["api_key"]))), paid_at

    async def cashback_of(payment_id: str, status: str, amount: int | None) -> float:
        async def shown() -> bool:
            response = await api.get(f"/api/v1/payments/{payment_id}", headers=customer_auth)
            return response.json()["cashback"] == {
                "status": status,
                **({"amount": amount} if amount is not None else {}),
            }

        await eventually(shown, timeout_s=5, every_s=0.01)
        return time.monotonic()

    first, paid_at = await pay(12_345)
    assert first["cashback"] == {"status": "pending"}
    credited_after = await cashback_of(first["id"], "credited", 308) - paid_at
    print(f"\npayment -> cashback.status credited, through the ingress: {credited_after * 1000:.0f} ms")
    assert credited_after < 2.0  # "within 1 s on an idle platform"; this machine is shared
    assert (await cashback_account())["balance"] == 308

    # A partial refund reverses the same share; a full refund of another payment reverses all of it.
    await _created(
        await api.post(
            f"/api/v1/payments/{first['id']}/refunds", json={"amount": 6_000}, headers=key(merchant["api_key"])
        )
    )
    await cashback_of(first["id"], "credited", 308 - 308 * 6_000 // 12_345)
    second, _ = await pay(10_000)
    await cashback_of(second["id"], "credited", 250)
    await _created(
        await api.post(
            f"/api/v1/payments/{second['id']}/refunds", json={"amount": 10_000}, headers=key(merchant["api_key"])
        )
    )
    await cashback_of(second["id"], "reversed", 0)
    balance = 308 - 308 * 6_000 // 12_345
    view = await cashback_account()
    assert view["balance"] == balance
    assert sorted((e["amount"], e["status"]) for e in view["entries"]) == [(0, "reversed"), (balance, "credited")]

    # Redemption: the cashback moves to the bank balance, once.
    bank_before = (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"]
    redeem_headers = key(customer["api_key"])
    path = f"/api/v1/cashback/accounts/{account['id']}/redemptions"
    redemption = await _created(await api.post(path, json={"amount": balance}, headers=redeem_headers), 202)
    replay = await api.post(path, json={"amount": balance}, headers=redeem_headers)
    assert replay.status_code == 202 and replay.json() == redemption
    refused = await api.post(path, json={"amount": 1}, headers=key(customer["api_key"]))
    assert (refused.status_code, refused.json()["type"]) == (402, "insufficient-cashback")

    async def completed() -> bool:
        response = await api.get(f"/api/v1/cashback/redemptions/{redemption['id']}", headers=customer_auth)
        return response.json()["status"] == "completed"

    await eventually(completed, timeout_s=5)
    bank_after = (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"]
    assert bank_after == bank_before + balance
    assert (await cashback_account())["balance"] == 0
    await asyncio.sleep(0.5)  # a second credit would have shown by now
    assert (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"] == bank_after
