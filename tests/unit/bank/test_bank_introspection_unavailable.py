"""A transaction-service request whose key cannot be checked (accounts down) is a 503, not a 500."""

from __future__ import annotations

import pytest

from newbank.auth import IntrospectionClient, Principal
from newbank.errors import ProblemError
from newbank.runtime import free_port


async def test_unreachable_accounts_service_is_503_with_retry_after() -> None:
    client = IntrospectionClient(f"http://127.0.0.1:{free_port()}", "admin-token")
    try:
        with pytest.raises(ProblemError) as caught:
            await client.resolve("nbm_some-merchant-key")
        assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "1"
        # The admin key needs no call at all.
        assert await client.resolve("admin-token") == Principal("admin")
    finally:
        await client.aclose()
