"""One whole platform (``newbank up``) for the chaos session, on its own state folder and ports.

It is started once (20-30 s) and shared by every scenario: each scenario waits until the platform is
healthy before it starts and leaves it whole. At the end ``newbank down --purge``; then anything of it
still alive is killed by PID — also when a test failed or the session was interrupted.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_platform import INGRESS_OFFSET, free_port_block, newbank_cli

from newbank.chaos.health import processes_of
from newbank.chaos.world import Target, World, load_or_create_world
from newbank.runtime import cgroups, procs
from newbank.runtime.layout import Layout
from newbank.runtime.platform import running_pids
from newbank_operator.local_loop import LOCAL_DEFAULT_SPEC


class ChaosPlatform:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="newbank-chaos-", dir="/tmp"))
        atexit.register(self.down)
        os.chmod(self.home, 0o755)  # the postgres user must reach its data folder below
        base = free_port_block()
        self.env = {
            **os.environ,
            "NEWBANK_HOME": str(self.home),
            # Below the kernel's ephemeral range: a broker held down is started again on the same ports,
            # which a client connection's local port must not have taken meanwhile.
            "NEWBANK_PORT_BASE": str(base),
            "NEWBANK_PORT": str(base + INGRESS_OFFSET),
        }
        self.env.pop("NEWBANK_ADMIN_TOKEN", None)
        self.stopped = False
        # The operator's local loop runs (its queue recovery is part of scenario 2), but with the
        # transaction service pinned at the default 2 instances: these scenarios measure failover,
        # and "the controller brings the count back" (3) needs a count that autoscaling leaves alone.
        spec = {**LOCAL_DEFAULT_SPEC, "scaling": {**LOCAL_DEFAULT_SPEC["scaling"], "minReplicas": 2, "maxReplicas": 2}}
        (self.home / "operator.json").write_text(json.dumps(spec))

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return newbank_cli(self.env, *args, timeout_s=timeout_s)

    @property
    def layout(self) -> Layout:
        layout = Layout.load(self.home)
        assert layout is not None, f"no runtime.json in {self.home}"
        return layout

    def down(self) -> None:
        """``newbank down --purge``, then SIGKILL by PID whatever of this platform survived it."""
        if self.stopped:
            return
        self.stopped = True
        layout = Layout.load(self.home)
        if layout is not None:
            self.cli("down", timeout_s=180)
            for pid in running_pids(layout).values():
                procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
            for pid in processes_of(self.home):
                procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
            cgroups.remove_all(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


def _start() -> ChaosPlatform:
    """``newbank up``; once more on fresh ports if the first try fails (other test sessions on this
    machine start brokers and databases too: a port found free may be taken a second later)."""
    failures = []
    for _ in range(2):
        platform = ChaosPlatform()
        t0 = time.monotonic()
        result = platform.cli("up")
        print(result.stdout, result.stderr, f"newbank up took {time.monotonic() - t0:.1f} s", sep="\n")
        if result.returncode == 0:
            return platform
        failures.append(result.stdout + result.stderr)
        platform.down()
    raise AssertionError("newbank up failed twice:\n" + "\n".join(failures))


@pytest.fixture(scope="session")
def chaos_platform() -> Iterator[ChaosPlatform]:
    platform = _start()
    try:
        yield platform
    finally:
        platform.down()


@pytest.fixture(scope="session")
def chaos_target(chaos_platform: ChaosPlatform) -> Target:
    return Target(chaos_platform.layout)


@pytest.fixture(scope="session")
def chaos_world(chaos_target: Target) -> World:
    """Made once through the public API (onboarding is rate limited), shared by every scenario."""
    return load_or_create_world(chaos_target)
