"""Keys asked at about the same time are introspected together.

At the start of a benchmark's point a thousand users arrived at once with keys new to the services'
caches: a thousand introspections at once queued for the client's connection pool and for the accounts
service (30 % of a CPU) on a saturated machine, and some took over 3 s: 503s. A real TCP server stands
in for the accounts service here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from introspection_standin import IntrospectionStandIn, introspection_standin

from newbank.auth import IntrospectionClient, Principal
from newbank.errors import ProblemError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def state() -> IntrospectionStandIn:
    return IntrospectionStandIn()


@pytest.fixture
async def url(state: IntrospectionStandIn) -> AsyncIterator[str]:
    async with introspection_standin(state) as base_url:
        yield base_url


async def test_a_thousand_new_keys_at_once_cost_a_few_requests(state: IntrospectionStandIn, url: str) -> None:
    state.delay_s = 0.05
    client = IntrospectionClient(url, "admin-token", max_batch=200, max_in_flight=4)
    try:
        answers = await asyncio.gather(*(client.resolve(f"nbm_key-{n}") for n in range(1000)))
    finally:
        await client.aclose()
    assert answers == [Principal("merchant", state.merchant_id)] * 1000
    # Four requests of 200 went at once; the last 200 keys waited for the first free one.
    assert [len(tokens) for tokens in state.requests] == [200] * 5
    assert state.peak_busy == 4
    assert sorted(token for tokens in state.requests for token in tokens) == sorted(f"nbm_key-{n}" for n in range(1000))


async def test_keys_asked_while_every_request_is_out_wait_for_the_next_one(
    state: IntrospectionStandIn, url: str
) -> None:
    state.delay_s = 0.2
    client = IntrospectionClient(url, "admin-token", max_in_flight=1)
    try:
        first = asyncio.ensure_future(client.resolve("nbm_first"))
        await asyncio.sleep(0.05)  # its request is out
        later = await asyncio.gather(*(client.resolve(f"nbm_later-{n}") for n in range(30)))
        assert await first == Principal("merchant", state.merchant_id)
    finally:
        await client.aclose()
    assert later == [Principal("merchant", state.merchant_id)] * 30
    assert [len(tokens) for tokens in state.requests] == [1, 30]


async def test_aged_keys_are_refreshed_together_in_the_background(state: IntrospectionStandIn, url: str) -> None:
    clock = Clock()
    client = IntrospectionClient(url, "admin-token", ttl_s=30, stale_s=10, clock=clock, refresh_delay_s=0.1)
    keys = [f"nbm_key-{n}" for n in range(50)]
    try:
        await asyncio.gather(*(client.resolve(key) for key in keys))
        assert state.asked == 1
        clock.now += 31
        for key in keys:  # one at a time, as requests come: each answered at once from the aged answer
            assert await asyncio.wait_for(client.resolve(key), 0.05) == Principal("merchant", state.merchant_id)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
    finally:
        await client.aclose()
    assert [len(tokens) for tokens in state.requests] == [50, 50]


async def test_a_waited_key_takes_the_queued_refreshes_along_at_once(state: IntrospectionStandIn, url: str) -> None:
    clock = Clock()
    client = IntrospectionClient(url, "admin-token", ttl_s=30, stale_s=10, clock=clock, refresh_delay_s=5.0)
    try:
        await client.resolve("nbm_old")
        clock.now += 31
        await client.resolve("nbm_old")  # its refresh waits up to 5 s for company...
        # ...but a key nobody has an answer for is asked at once, and the refresh goes with it.
        assert await asyncio.wait_for(client.resolve("nbm_new"), 1.0) == Principal("merchant", state.merchant_id)
    finally:
        await client.aclose()
    assert [sorted(tokens) for tokens in state.requests] == [["nbm_old"], ["nbm_new", "nbm_old"]]


async def test_an_answer_that_does_not_match_the_keys_is_a_503_for_each_not_a_hang(
    state: IntrospectionStandIn, url: str
) -> None:
    state.short = True
    client = IntrospectionClient(url, "admin-token")
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(client.resolve(f"nbm_key-{n}") for n in range(5)), return_exceptions=True), 5.0
        )
    finally:
        await client.aclose()
    assert all(isinstance(outcome, ProblemError) and outcome.status == 503 for outcome in outcomes)
    assert state.asked == 1


async def test_a_key_the_accounts_service_calls_its_admin_key_is_the_admin(
    state: IntrospectionStandIn, url: str
) -> None:
    state.admin_keys = frozenset({"accounts-admin"})
    client = IntrospectionClient(url, "this-service-admin")
    try:
        answers = await asyncio.gather(client.resolve("accounts-admin"), client.resolve("nbm_key"))
    finally:
        await client.aclose()
    assert answers == [Principal("admin"), Principal("merchant", state.merchant_id)]
    assert state.asked == 1
