"""Introspection asks once per key at a time, and a key in use is never waited for when its answer ages.

Under a benchmark's load, every key cached at the start of the load expired in the same second; each
request of that second introspected again, the accounts service fell seconds behind and requests got
503s. A real TCP server stands in for the accounts service here; the clock is the test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from introspection_standin import IntrospectionStandIn, introspection_standin

from newbank.auth import IntrospectionClient, Principal
from newbank.errors import ProblemError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def merchant(state: IntrospectionStandIn) -> Principal:
    return Principal("merchant", state.merchant_id)


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def eventually_refused(client: IntrospectionClient, timeout_s: float = 5.0) -> None:
    """The background refresh's answer (a refusal) is what the client gives, once it is back."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await client.resolve("nbm_key") is not None:
        assert asyncio.get_running_loop().time() < deadline, "still accepted"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def clocked_client(state: IntrospectionStandIn) -> AsyncIterator[tuple[IntrospectionClient, Clock]]:
    """A client with a 30 s TTL and 10 s of stale answers on the test's clock, against the stand-in."""
    clock = Clock()
    async with introspection_standin(state) as url:
        client = IntrospectionClient(url, "admin-token", ttl_s=30, stale_s=10, clock=clock)
        try:
            yield client, clock
        finally:
            await client.aclose()


async def test_concurrent_requests_for_one_key_ask_once() -> None:
    state = IntrospectionStandIn(delay_s=0.2)
    async with introspection_standin(state) as url:
        client = IntrospectionClient(url, "admin-token")
        try:
            answers = await asyncio.gather(*(client.resolve("nbm_key") for _ in range(50)))
        finally:
            await client.aclose()
    assert answers == [merchant(state)] * 50
    assert state.asked == 1


async def test_an_aged_answer_is_given_while_one_refresh_runs() -> None:
    state = IntrospectionStandIn()
    async with clocked_client(state) as (client, clock):
        assert await client.resolve("nbm_key") == merchant(state)
        clock.now += 31  # past its 30 s, within the 10 s more
        state.delay_s = 1.0
        # Answered at once from what the cache has (well before the introspection's 1 s), by many
        # requests, with one introspection behind them.
        answers = await asyncio.wait_for(asyncio.gather(*(client.resolve("nbm_key") for _ in range(20))), 0.5)
        assert answers == [merchant(state)] * 20
        await eventually(lambda: state.asked == 2)
        await asyncio.sleep(1.2)  # the refresh's answer is back
        # It made the answer fresh again: past the old one's 10 s more, no introspection.
        clock.now += 25
        assert await client.resolve("nbm_key") == merchant(state)
        assert state.asked == 2


async def test_a_revocation_is_seen_by_the_refresh_and_not_later() -> None:
    state = IntrospectionStandIn()
    async with clocked_client(state) as (client, clock):
        assert await client.resolve("nbm_key") == merchant(state)
        state.active = False  # the key is revoked
        clock.now += 31
        assert await client.resolve("nbm_key") == merchant(state)  # the aged answer, one last time
        await eventually_refused(client)
        assert state.asked == 2
        # A refusal is never given stale: past the negative TTL it is asked again.
        clock.now += 3
        state.active = True
        assert await client.resolve("nbm_key") == merchant(state)
        assert state.asked == 3


async def test_past_the_stale_window_a_request_waits_for_the_answer() -> None:
    state = IntrospectionStandIn()
    async with clocked_client(state) as (client, clock):
        assert await client.resolve("nbm_key") == merchant(state)
        clock.now += 41
        state.active = False
        assert await client.resolve("nbm_key") is None
        assert state.asked == 2


async def test_accounts_failing_keeps_the_aged_answer_only_until_the_stale_window_ends() -> None:
    state = IntrospectionStandIn()
    async with clocked_client(state) as (client, clock):
        assert await client.resolve("nbm_key") == merchant(state)
        state.failing = True
        clock.now += 35
        assert await client.resolve("nbm_key") == merchant(state)
        await asyncio.sleep(0.2)  # that refresh failed; the answer is still within its window
        assert await client.resolve("nbm_key") == merchant(state)
        await asyncio.sleep(0.2)
        clock.now += 6  # 41 s after it was asked
        with pytest.raises(ProblemError) as caught:
            await client.resolve("nbm_key")
        assert caught.value.status == 503


async def test_a_request_that_goes_away_does_not_cancel_the_others_answer() -> None:
    state = IntrospectionStandIn(delay_s=0.3)
    async with introspection_standin(state) as url:
        client = IntrospectionClient(url, "admin-token")
        try:
            leaving = asyncio.ensure_future(client.resolve("nbm_key"))
            staying = asyncio.ensure_future(client.resolve("nbm_key"))
            await asyncio.sleep(0.05)
            leaving.cancel()
            assert await staying == merchant(state)
            assert leaving.cancelled()
            assert state.asked == 1
        finally:
            await client.aclose()
