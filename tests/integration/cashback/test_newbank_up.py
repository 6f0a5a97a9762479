"""The cashback story through the ingress of ``newbank up`` (its own state folder and ports, never 8080
or .newbank/): the platform as a user starts it, Patroni pair, RabbitMQ, HAProxy, cgroup-limited
instances. ``newbank down`` and a PID sweep afterwards leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from cashback_story import cashback_story
from local_platform import LocalPlatform

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def up_platform() -> Iterator[LocalPlatform]:
    """``newbank up``; a second try on a fresh port block and folder if the first one fails (on a machine
    shared with other test runs, a port found free can be taken before Patroni or RabbitMQ binds it)."""
    outputs: list[str] = []
    for _ in range(2):
        platform = LocalPlatform(standin=False)  # the real services, whatever NEWBANK_TEST_STANDIN says
        try:
            result = platform.cli("up")
            if result.returncode == 0:
                yield platform
                return
            outputs.append(result.stdout + result.stderr)
        finally:
            platform.tear_down()
    raise AssertionError("newbank up failed twice:\n" + "\n---\n".join(outputs))


@pytest_asyncio.fixture
async def ingress(up_platform: LocalPlatform) -> AsyncIterator[httpx.AsyncClient]:
    from newbank.runtime.layout import Layout

    layout = Layout.load(up_platform.home)
    assert layout is not None
    async with httpx.AsyncClient(base_url=layout.ingress_url, timeout=10) as client:
        yield client


async def test_cashback_story_through_newbank_up(up_platform: LocalPlatform, ingress: httpx.AsyncClient) -> None:
    admin_token = (up_platform.home / "admin-token").read_text().strip()
    await cashback_story(ingress, admin_token)
