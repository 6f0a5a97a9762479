"""Introspection survives a connection the accounts service closes under it.

uvicorn closes keep-alive connections idle for 5 s; a request sent on one at that moment gets no
answer. In a benchmark run that surfaced as one 503 on a customer's cashback read. The client now
drops idle connections after 2 s and sends the (read-only) introspection once more when the
connection fails before an answer. A real TCP server here drops connections on purpose."""

from __future__ import annotations

from introspection_standin import IntrospectionStandIn, introspection_standin, problem_resolving

from newbank.auth import IntrospectionClient, Principal


async def test_a_connection_lost_before_the_answer_is_retried_once() -> None:
    state = IntrospectionStandIn(drop_first=1)
    async with introspection_standin(state) as url:
        client = IntrospectionClient(url, "admin-token")
        try:
            assert await client.resolve("nbm_key") == Principal("merchant", state.merchant_id)
        finally:
            await client.aclose()
    assert state.outcomes == ["dropped", "answered"]


async def test_accounts_dropping_every_connection_is_still_a_503() -> None:
    state = IntrospectionStandIn(drop_first=10)
    assert (await problem_resolving(state)).status == 503
    assert state.outcomes == ["dropped", "dropped"]
