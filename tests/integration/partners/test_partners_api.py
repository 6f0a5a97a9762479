"""The partners service against real PostgreSQL and RabbitMQ: stores from merchant.registered, offers
(auth, validation, versions), listing with filters and cursors, and the cache dropped on every
instance by partner.offer_changed within 2 s."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from bank_events import register_merchant, set_offer
from cashback_harness import ADMIN, Env, auth, eventually, running, service_settings

from newbank.partners.main import build_app as build_partners

pytestmark = [pytest.mark.integration]


@pytest_asyncio.fixture(scope="module")
async def two_instances(cashback_env: Env) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two partners instances with a long TTL: only the invalidation event can refresh them in time."""
    async with (
        running(build_partners(service_settings("partners", cashback_env, partners_cache_ttl_s=60))) as first,
        running(build_partners(service_settings("partners", cashback_env, partners_cache_ttl_s=60))) as second,
    ):
        yield first, second


async def test_offer_change_visible_on_every_instance_within_2s(
    env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, second = two_instances
    merchant = await register_merchant(env, first, country="FR", category="bakery", name="Boulangerie Élodie")
    path = f"/api/v1/partners/{merchant.merchant_id}"
    # Warm both caches (the listing and the store) with "no offer".
    for instance in (first, second):
        assert (await instance.get(path)).json()["offer"] is None
        await instance.get("/api/v1/partners", params={"country": "FR"})

    for rate in (150, 275):
        changed_at = time.monotonic()
        await set_offer(first, merchant, rate)

        async def seen_everywhere(rate: int = rate) -> bool:
            for instance in (first, second):
                store = (await instance.get(path)).json()
                listing = (await instance.get("/api/v1/partners", params={"country": "FR", "limit": 200})).json()
                listed = [s for s in listing["items"] if s["merchant_id"] == str(merchant.merchant_id)]
                if (store["offer"] or {}).get("rate_bps") != rate or (listed[0]["offer"] or {}).get("rate_bps") != rate:
                    return False
            return True

        await eventually(seen_everywhere, timeout_s=2.0)
        assert time.monotonic() - changed_at < 2.0

    ended = await second.delete(f"/api/v1/partners/{merchant.merchant_id}/offer", headers=auth(merchant.token))
    assert ended.status_code == 204

    async def gone_everywhere() -> bool:
        return all([(await i.get(path)).json()["offer"] is None for i in (first, second)])

    await eventually(gone_everywhere, timeout_s=2.0)


async def test_new_partner_store_appears_on_every_instance(
    env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, second = two_instances
    category = f"cat-{uuid.uuid4().hex[:8]}"
    for instance in two_instances:
        assert (await instance.get("/api/v1/partners", params={"category": category})).json()["items"] == []
    merchant = await register_merchant(env, first, category=category)

    async def listed_on_second() -> bool:
        items = (await second.get("/api/v1/partners", params={"category": category})).json()["items"]
        return [i["merchant_id"] for i in items] == [str(merchant.merchant_id)]

    await eventually(listed_on_second, timeout_s=2.0)


async def test_offer_body_and_permissions(env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    partners, _ = two_instances
    merchant = await register_merchant(env, partners)
    other = await register_merchant(env, partners)
    offer_path = f"/api/v1/partners/{merchant.merchant_id}/offer"
    start = datetime.now(UTC) + timedelta(days=1)
    body = {"rate_bps": 5000, "valid_from": start.isoformat(), "valid_until": (start + timedelta(days=7)).isoformat()}
    answer = await partners.put(offer_path, json=body, headers=auth(merchant.token))
    assert answer.status_code == 200, answer.text
    offer = answer.json()
    assert (offer["rate_bps"], offer["version"], offer["active"]) == (5000, 1, False)
    assert offer["valid_from"].endswith("Z") and offer["merchant_id"] == str(merchant.merchant_id)
    store = (await partners.get(f"/api/v1/partners/{merchant.merchant_id}")).json()
    assert store["offer"]["rate_bps"] == 5000 and store["offer"]["active"] is False  # announced, not yet active

    by_admin = await partners.put(offer_path, json={"rate_bps": 10}, headers=ADMIN)
    assert (by_admin.status_code, by_admin.json()["version"], by_admin.json()["active"]) == (200, 2, True)
    assert (await partners.put(offer_path, json={"rate_bps": 10}, headers=auth(other.token))).status_code == 403
    assert (await partners.put(offer_path, json={"rate_bps": 10})).status_code == 401
    customer_token, _ = env.keys.new("customer")
    assert (await partners.put(offer_path, json={"rate_bps": 10}, headers=auth(customer_token))).status_code == 403
    unknown = await partners.put(f"/api/v1/partners/{uuid.uuid4()}/offer", json={"rate_bps": 10}, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    for bad in (
        {"rate_bps": 5001},
        {"rate_bps": -1},
        {"rate_bps": 1.5},
        {"rate_bps": "100"},
        {"rate_bps": True},
        {},
        {"rate_bps": 100, "valid_from": "2026-01-02T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"},
        {"rate_bps": 100, "valid_from": "2026-01-02T00:00:00"},  # no time zone
        {"rate_bps": 100, "valid_from": "tomorrow"},
    ):
        response = await partners.put(offer_path, json=bad, headers=ADMIN)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["type"] == "validation-error"
    zero = await partners.put(offer_path, json={"rate_bps": 0}, headers=auth(merchant.token))
    assert (zero.status_code, zero.json()["active"]) == (200, False)
    assert (await partners.get(f"/api/v1/partners/{merchant.merchant_id}")).json()["offer"] is None
    versions = await env.pool.fetch(
        "SELECT version, rate_bps, set_by FROM partner_offer WHERE merchant_id = $1 ORDER BY version",
        merchant.merchant_id,
    )
    assert [(v["version"], v["rate_bps"]) for v in versions] == [(1, 5000), (2, 10), (3, 0)]
    assert versions[1]["set_by"] == "admin" and versions[2]["set_by"] == f"merchant:{merchant.merchant_id}"


async def test_concurrent_offer_changes_get_distinct_versions(
    env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, second = two_instances
    merchant = await register_merchant(env, first)
    answers = await asyncio.gather(
        *(
            instance.put(f"/api/v1/partners/{merchant.merchant_id}/offer", json={"rate_bps": 10 + i}, headers=ADMIN)
            for i, instance in enumerate([first, second] * 5)
        )
    )
    assert sorted(a.json()["version"] for a in answers) == list(range(1, 11))


async def test_listing_filters_and_cursor(env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    partners, _ = two_instances
    category = f"shoes-{uuid.uuid4().hex[:6]}"
    merchants = [await register_merchant(env, partners, country="IT", category=category) for _ in range(5)]
    await register_merchant(env, partners, country="ES", category=category)
    await set_offer(partners, merchants[0], 300)
    await asyncio.sleep(0.2)  # the registration events' invalidations
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"country": "it", "category": category, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await partners.get("/api/v1/partners", params=params)).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(s["merchant_id"] for s in seen) == sorted(str(m.merchant_id) for m in merchants)
    assert {s["country"] for s in seen} == {"IT"}
    with_offer = [s for s in seen if s["offer"]]
    assert [(s["merchant_id"], s["offer"]["rate_bps"]) for s in with_offer] == [(str(merchants[0].merchant_id), 300)]
    assert set(seen[0]) >= {"merchant_id", "name", "country", "category", "offer"}

    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"country": "ITA"}, {"cursor": "!!"}):
        response = await partners.get("/api/v1/partners", params=bad)
        assert 400 <= response.status_code < 500, (bad, response.text)
    assert (await partners.get("/api/v1/partners/not-a-uuid")).status_code == 422
    assert (await partners.get(f"/api/v1/partners/{uuid.uuid4()}")).status_code == 404


async def test_bad_merchant_registered_is_dead_lettered(
    env: Env, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    import aio_pika

    from newbank.messaging.consumer import ERROR_HEADER

    event_id = await env.bus.publish("merchant.registered", {"merchant_id": "x", "name": "no country"})
    connection = await aio_pika.connect(env.amqp_url)
    try:
        queue = await (await connection.channel()).get_queue("partners.merchant-events.dlq", ensure=False)

        async def dead() -> dict | None:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return None
            await message.ack()
            return dict(message.headers or {}) if message.message_id == str(event_id) else None

        headers = await eventually(dead, timeout_s=10, every_s=0.2)
        assert "merchant.registered payload" in str(headers[ERROR_HEADER])
    finally:
        await connection.close()
