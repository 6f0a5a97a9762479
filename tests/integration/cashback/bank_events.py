"""The bank's events as the transaction and accounts services publish them (API contract of issue 4)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from cashback_harness import ADMIN, Env, auth, eventually, now_rfc3339


@dataclass
class Customer:
    token: str
    customer_id: uuid.UUID
    account_id: uuid.UUID
    currency: str


@dataclass
class Merchant:
    token: str
    merchant_id: uuid.UUID
    currency: str
    refunded: dict[uuid.UUID, int] = field(default_factory=dict)


async def open_account(env: Env, currency: str = "EUR") -> Customer:
    token, customer_id = env.keys.new("customer")
    account_id = uuid.uuid4()
    await env.bus.publish(
        "account.opened",
        {
            "account_id": str(account_id),
            "customer_id": str(customer_id),
            "currency": currency,
            "created_at": now_rfc3339(),
        },
    )
    return Customer(token, customer_id, account_id, currency)


async def register_merchant(
    env: Env,
    partners: httpx.AsyncClient,
    *,
    country: str = "DE",
    category: str = "books",
    currency: str = "EUR",
    name: str = "Bücherstube",
) -> Merchant:
    token, merchant_id = env.keys.new("merchant")
    await env.bus.publish(
        "merchant.registered",
        {
            "merchant_id": str(merchant_id),
            "name": name,
            "country": country,
            "currency": currency,
            "category": category,
            "website": None,
            "created_at": now_rfc3339(),
        },
    )

    async def listed() -> bool:
        return (await partners.get(f"/api/v1/partners/{merchant_id}")).status_code == 200

    await eventually(listed)
    return Merchant(token, merchant_id, currency)


async def set_offer(partners: httpx.AsyncClient, merchant: Merchant, rate_bps: int, **window: str) -> dict[str, Any]:
    response = await partners.put(
        f"/api/v1/partners/{merchant.merchant_id}/offer",
        json={"rate_bps": rate_bps, **window},
        headers=auth(merchant.token),
    )
    assert response.status_code == 200, response.text
    return response.json()


def payment_completed(
    customer: Customer,
    merchant: Merchant,
    debited_amount: int,
    *,
    amount: int | None = None,
    created_at: datetime | None = None,
    payment_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "payment_id": str(payment_id or uuid.uuid4()),
        "account_id": str(customer.account_id),
        "customer_id": str(customer.customer_id),
        "merchant_id": str(merchant.merchant_id),
        "amount": amount or debited_amount,
        "currency": merchant.currency,
        "debited_amount": debited_amount,
        "account_currency": customer.currency,
        "fx_rate": "1",
        "created_at": now_rfc3339(created_at or datetime.now(UTC)),
    }


def payment_refunded(payment: dict[str, Any], amount: int, refunded_amount: int) -> dict[str, Any]:
    return {
        "refund_id": str(uuid.uuid4()),
        "payment_id": payment["payment_id"],
        "account_id": payment["account_id"],
        "customer_id": payment["customer_id"],
        "merchant_id": payment["merchant_id"],
        "amount": amount,
        "refunded_amount": refunded_amount,
        "payment_amount": payment["amount"],
        "currency": payment["currency"],
        "debited_amount": payment["debited_amount"],
        "credited_amount": amount,
        "account_currency": payment["account_currency"],
        "fx_rate": payment["fx_rate"],
        "payment_created_at": payment["created_at"],
        "created_at": now_rfc3339(),
    }


async def cashback_account(cashback: httpx.AsyncClient, customer: Customer) -> dict[str, Any]:
    response = await cashback.get(f"/api/v1/cashback/accounts/{customer.account_id}", headers=auth(customer.token))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_balance(cashback: httpx.AsyncClient, customer: Customer, balance: int, timeout_s: float = 10) -> dict:
    async def reached() -> dict[str, Any] | None:
        response = await cashback.get(f"/api/v1/cashback/accounts/{customer.account_id}", headers=ADMIN)
        if response.status_code == 200 and response.json()["balance"] == balance:
            return response.json()
        return None

    return await eventually(reached, timeout_s)


async def entry_row(env: Env, payment_id: str) -> dict[str, Any] | None:
    row = await env.pool.fetchrow("SELECT * FROM cashback_entry WHERE payment_id = $1", uuid.UUID(payment_id))
    return dict(row) if row else None


async def cashback_events(env: Env, payment_id: str) -> list[dict[str, Any]]:
    """The cashback.* events our outbox holds for a payment, in order."""
    rows = await env.pool.fetch(
        "SELECT event_type, envelope FROM outbox_event WHERE event_type LIKE 'cashback.%'"
        " AND envelope -> 'data' ->> 'payment_id' = $1 ORDER BY seq",
        payment_id,
    )
    return [{"type": r["event_type"], **orjson.loads(r["envelope"])["data"]} for r in rows]


async def wait_processed(env: Env, *event_ids: uuid.UUID, timeout_s: float = 10) -> None:
    """Until the cashback consumers recorded these events in their inbox (applied or found to change nothing)."""

    async def recorded() -> bool:
        count = await env.pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM inbox_event WHERE event_id = ANY($1::uuid[])", list(event_ids)
        )
        return count == len(set(event_ids))

    await eventually(recorded, timeout_s)
