"""The cashback story through the ingress of ``newbank up`` (its own state folder and ports, never 8080
or .newbank/): the platform as a user starts it, Patroni pair, RabbitMQ, HAProxy, cgroup-limited
instances. ``newbank down`` and a PID sweep afterwards leave nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cashback_story import cashback_story

from newbank.runtime import procs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class UpPlatform:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="newbank-up-cashback-", dir="/tmp"))
        os.chmod(self.home, 0o755)
        self.port = procs.free_port()
        self.env = {
            **os.environ,
            "NEWBANK_HOME": str(self.home),
            "NEWBANK_PORT_BASE": str(self._free_port_block()),
            "NEWBANK_PORT": str(self.port),
            "NEWBANK_OPERATOR": "off",
        }
        self.env.pop("NEWBANK_ADMIN_TOKEN", None)

    @staticmethod
    def _free_port_block() -> int:
        from newbank.runtime.layout import PORT_OFFSETS

        span = max(PORT_OFFSETS.values()) + 1
        for _ in range(200):
            base = 20000 + (uuid.uuid4().int % 300) * 100
            if all(not procs.port_open(base + i) for i in range(span)):
                return base
        raise RuntimeError("no free port block")

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newbank.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def tear_down(self) -> None:
        from newbank.runtime import cgroups
        from newbank.runtime.layout import Layout
        from newbank.runtime.platform import running_pids

        layout = Layout.load(self.home)
        if layout is not None:
            self.cli("down", timeout_s=120)
            for pid in running_pids(layout).values():
                procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
            cgroups.remove_all(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def up_platform() -> Iterator[UpPlatform]:
    """``newbank up``; a second try on a fresh port block and folder if the first one fails (on a machine
    shared with other test runs, a port found free can be taken before Patroni or RabbitMQ binds it)."""
    outputs: list[str] = []
    for _ in range(2):
        platform = UpPlatform()
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
async def ingress(up_platform: UpPlatform) -> AsyncIterator[httpx.AsyncClient]:
    from newbank.runtime.layout import Layout

    layout = Layout.load(up_platform.home)
    assert layout is not None
    async with httpx.AsyncClient(base_url=layout.ingress_url, timeout=10) as client:
        yield client


async def test_cashback_story_through_newbank_up(up_platform: UpPlatform, ingress: httpx.AsyncClient) -> None:
    admin_token = (up_platform.home / "admin-token").read_text().strip()
    await cashback_story(ingress, admin_token)
