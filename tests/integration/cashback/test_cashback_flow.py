"""Cashback against real PostgreSQL and RabbitMQ: the rule with offer versions, exactly once per
payment, refunds partial and full (also before their payment), owner checks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from bank_events import (
    Customer,
    cashback_account,
    cashback_events,
    entry_row,
    open_account,
    payment_completed,
    payment_refunded,
    register_merchant,
    set_offer,
    wait_balance,
    wait_processed,
)
from cashback_harness import ADMIN, Env, auth, eventually

pytestmark = [pytest.mark.integration]


async def test_account_known_from_account_opened_has_zero_balance(env: Env, cashback: httpx.AsyncClient) -> None:
    customer = await open_account(env, "JPY")
    body = await wait_balance(cashback, customer, 0)
    assert body == {
        "account_id": str(customer.account_id),
        "currency": "JPY",
        "balance": 0,
        "entries": [],
        "next_cursor": None,
    }


async def test_payment_credited_once_with_the_rule(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 250)
    payment = payment_completed(customer, merchant, 12_345)
    event_id = await env.bus.publish("payment.completed", payment)

    body = await wait_balance(cashback, customer, 308)  # floor(12345 × 250 / 10000)
    assert [(e["payment_id"], e["amount"], e["status"]) for e in body["entries"]] == [
        (payment["payment_id"], 308, "credited")
    ]
    # The same event again, and the same payment under another event id: nothing more.
    await env.bus.publish("payment.completed", payment, event_id=event_id)
    await wait_processed(env, await env.bus.publish("payment.completed", payment))
    assert (await cashback_account(cashback, customer))["balance"] == 308
    events = await cashback_events(env, payment["payment_id"])
    assert [(e["type"], e["status"], e["amount"], e["entry_version"]) for e in events] == [
        ("cashback.credited", "credited", 308, 1)
    ]
    assert events[0]["currency"] == "EUR" and events[0]["account_id"] == str(customer.account_id)


async def test_no_offer_records_none(env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    payment = payment_completed(customer, merchant, 10_000)
    await env.bus.publish("payment.completed", payment)
    row = await eventually(lambda: entry_row(env, payment["payment_id"]))
    assert (row["status"], row["earned"]) == ("none", 0)
    assert (await cashback_account(cashback, customer))["entries"] == []
    assert [e["type"] for e in await cashback_events(env, payment["payment_id"])] == ["cashback.none"]


async def test_offer_in_force_at_the_payment_time_even_when_changed_before_processing(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    before_any_offer = datetime.now(UTC)
    await set_offer(partners, merchant, 100)  # 1 %
    under_first = datetime.now(UTC)
    await set_offer(partners, merchant, 1000)  # 10 %, recorded after the payment below
    under_second = datetime.now(UTC)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    window_from = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    await set_offer(partners, merchant, 5000, valid_from=window_from, valid_until=later)  # 50 % from +1 s
    waiting_for_window = datetime.now(UTC)
    await asyncio.sleep(1.1)
    in_window = datetime.now(UTC)

    cases = [
        (before_any_offer, 0),
        (under_first, 100),  # processed after two more versions were recorded: still 1 %
        (under_second, 1000),
        (waiting_for_window, 0),  # the latest version's window has not opened yet
        (in_window, 5000),
    ]
    payments = [payment_completed(customer, merchant, 10_000, created_at=moment) for moment, _ in cases]
    for payment in payments:
        await env.bus.publish("payment.completed", payment)
    expected = sum(10_000 * rate // 10_000 for _, rate in cases)
    await wait_balance(cashback, customer, expected)
    for payment, (_, rate) in zip(payments, cases, strict=True):
        # Entries that earn nothing do not move the balance: wait for each one itself.
        row = await eventually(lambda payment=payment: entry_row(env, payment["payment_id"]))
        assert (row["rate_bps"], row["earned"]) == (rate, 10_000 * rate // 10_000)


async def test_partial_then_full_refund(env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 333)
    payment = payment_completed(customer, merchant, 10_000)
    await env.bus.publish("payment.completed", payment)
    await wait_balance(cashback, customer, 333)

    first = payment_refunded(payment, 5_000, 5_000)
    await env.bus.publish("payment.refunded", first)
    body = await wait_balance(cashback, customer, 333 - 166)
    assert [(e["amount"], e["status"]) for e in body["entries"]] == [(167, "credited")]
    await wait_processed(env, await env.bus.publish("payment.refunded", first))  # replayed, new id: no change
    assert (await cashback_account(cashback, customer))["balance"] == 333 - 166
    second = payment_refunded(payment, 5_000, 10_000)
    await env.bus.publish("payment.refunded", second)
    body = await wait_balance(cashback, customer, 0)
    assert [(e["amount"], e["earned"], e["status"]) for e in body["entries"]] == [(0, 333, "reversed")]
    events = await cashback_events(env, payment["payment_id"])
    assert [(e["type"], e["status"], e["amount"], e["entry_version"]) for e in events] == [
        ("cashback.credited", "credited", 333, 1),
        ("cashback.reversed", "credited", 167, 2),
        ("cashback.reversed", "reversed", 0, 3),
    ]


async def test_refund_overtaking_its_payment(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 500)
    payment = payment_completed(customer, merchant, 8_000)
    second = payment_refunded(payment, 2_000, 6_000)  # the later refund, first to arrive
    await env.bus.publish("payment.refunded", second)
    await wait_balance(cashback, customer, 400 - 300)
    await wait_processed(
        env,
        await env.bus.publish("payment.refunded", payment_refunded(payment, 4_000, 4_000)),
        await env.bus.publish("payment.completed", payment),
    )
    assert (await cashback_account(cashback, customer))["balance"] == 100
    row = await entry_row(env, payment["payment_id"])
    assert row is not None and (row["earned"], row["reversed_amount"], row["refunded_amount"]) == (400, 300, 6_000)


async def test_owner_checks(env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient) -> None:
    owner = await open_account(env)
    other = await open_account(env)
    merchant = await register_merchant(env, partners)
    await wait_balance(cashback, owner, 0)
    path = f"/api/v1/cashback/accounts/{owner.account_id}"
    assert (await cashback.get(path)).status_code == 401
    assert (await cashback.get(path, headers=auth("nbc_not-a-key"))).status_code == 401
    response = await cashback.get(path, headers=auth(other.token))
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert (await cashback.get(path, headers=auth(merchant.token))).status_code == 403
    assert (await cashback.get(path, headers=ADMIN)).status_code == 200
    assert (await cashback.get(path, headers=auth(owner.token))).status_code == 200
    missing = f"/api/v1/cashback/accounts/{uuid.uuid4()}"
    assert (await cashback.get(missing, headers=ADMIN)).status_code == 404
    bad = await cashback.get("/api/v1/cashback/accounts/not-a-uuid", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["type"] == "validation-error"
    assert (await cashback.get(path + "?cursor=%%%", headers=ADMIN)).status_code == 400
    assert (await cashback.get(path + "?limit=0", headers=ADMIN)).status_code == 422


async def test_entries_are_paginated_newest_first(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 100)
    payments = [payment_completed(customer, merchant, 1_000 * (i + 1)) for i in range(5)]
    for payment in payments:
        await env.bus.publish("payment.completed", payment)
    await wait_balance(cashback, customer, sum(10 * (i + 1) for i in range(5)))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await cashback.get(
                f"/api/v1/cashback/accounts/{customer.account_id}", params=params, headers=auth(customer.token)
            )
        ).json()
        seen += [e["payment_id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(p["payment_id"] for p in payments) and len(seen) == 5


async def test_payment_before_its_account_opened(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    """The account is made from the payment event (its owner and currency) and credited in one go;
    the late account.opened changes nothing but the opening date."""
    token, customer_id = env.keys.new("customer")
    customer = Customer(token, customer_id, uuid.uuid4(), "EUR")
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 400)
    await env.bus.publish("payment.completed", payment_completed(customer, merchant, 2_500))
    await wait_balance(cashback, customer, 100)
    opened = {
        "account_id": str(customer.account_id),
        "customer_id": str(customer_id),
        "currency": "EUR",
        "created_at": "2026-01-01T00:00:00Z",
    }
    await wait_processed(env, await env.bus.publish("account.opened", opened))
    body = await cashback_account(cashback, customer)
    assert (body["balance"], body["currency"], len(body["entries"])) == (100, "EUR", 1)
