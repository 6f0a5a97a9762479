"""A key's check waits for a slow accounts service up to its timeout, and the metrics say how it went.

Under a saturated machine the accounts service (one process's CPU weight) answered introspection in up
to 5-10 s; with the former 3 s timeout, a request whose key had no cached answer was a 503 (one at each of
two points of the seventeenth session's benchmark; measured in the eighteenth, ``loadtest/README.md``).
The timeout is now a setting, 10 s by default, and every introspection is timed in
``newbank_key_introspection_duration_seconds``.
"""

from __future__ import annotations

import pytest
from introspection_standin import IntrospectionStandIn, introspection_standin, problem_resolving
from prometheus_client import REGISTRY

from newbank.auth import IntrospectionClient, Principal
from newbank.settings import Settings


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _timed(outcome: str) -> float:
    return _sample("newbank_key_introspection_duration_seconds_count", {"outcome": outcome})


async def test_a_slow_answer_within_the_timeout_is_awaited_and_timed() -> None:
    state = IntrospectionStandIn(delay_s=0.4)
    answered_before = _timed("answered")
    async with introspection_standin(state) as url:
        client = IntrospectionClient(url, "admin-token", timeout_s=2.0)
        try:
            assert await client.resolve("nbm_key") == Principal("merchant", state.merchant_id)
        finally:
            await client.aclose()
    assert _timed("answered") == answered_before + 1
    assert state.outcomes == ["answered"]


async def test_an_answer_later_than_the_timeout_is_a_503_counted_as_unchecked() -> None:
    state = IntrospectionStandIn(delay_s=1.0)
    timeouts_before, unchecked_before = _timed("timeout"), _sample("newbank_keys_unchecked_total")
    assert (await problem_resolving(state, timeout_s=0.2)).status == 503
    assert _timed("timeout") == timeouts_before + 1
    assert _sample("newbank_keys_unchecked_total") == unchecked_before + 1


def test_the_timeout_is_a_setting_and_must_be_positive() -> None:
    assert Settings().introspection_timeout_s == 10.0
    assert Settings(introspection_timeout_s=4).introspection_timeout_s == 4
    with pytest.raises(ValueError):
        Settings(introspection_timeout_s=0)
