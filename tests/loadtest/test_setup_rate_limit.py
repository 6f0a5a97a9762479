"""The setup client waits out the onboarding limit as long as Retry-After says, then gives up.

The platform's side of the limit (what Retry-After is worth) is tested on real PostgreSQL in
``tests/integration/bank/test_bank_accounts.py``; this is the client's loop, on an in-process transport.
"""

from __future__ import annotations

import httpx
import pytest

from loadtest.setup_data import Api


def _limited_then_created(refusals: int, calls: list[float]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= refusals:
            body = {"type": "rate-limited", "status": 429, "detail": "at most 20 onboardings per minute"}
            return httpx.Response(429, json=body, headers={"Retry-After": "0"})
        return httpx.Response(201, json={"id": "m1"})

    return httpx.MockTransport(handle)


async def test_retries_a_rate_limited_call_past_sixty_refusals() -> None:
    calls: list[float] = []
    async with httpx.AsyncClient(transport=_limited_then_created(75, calls), base_url="http://x") as client:
        answer = await Api(client, "admin").call("POST", "/api/v1/merchants", anonymous=True, body={})
    assert answer == {"id": "m1"} and len(calls) == 76


async def test_gives_up_after_its_rate_limit_wait() -> None:
    calls: list[float] = []
    async with httpx.AsyncClient(transport=_limited_then_created(10**6, calls), base_url="http://x") as client:
        api = Api(client, "admin", rate_limit_wait_s=0)
        with pytest.raises(RuntimeError, match="429"):
            await api.call("POST", "/api/v1/merchants", anonymous=True, body={})
    assert len(calls) == 1
