"""Fixtures of the cashback integration tests (see cashback_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from cashback_harness import Env, cashback_env, env, running, service_settings  # noqa: F401 - fixtures

from newbank.cashback.main import build_app as build_cashback
from newbank.partners.main import build_app as build_partners


@pytest_asyncio.fixture(scope="module")
async def partners(cashback_env: Env) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with running(build_partners(service_settings("partners", cashback_env))) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def cashback(cashback_env: Env) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with running(build_cashback(service_settings("cashback", cashback_env))) as client:
        yield client
