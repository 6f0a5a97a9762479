"""The load generator's CPU group: a real cgroup v1 group, a real process started in it, removed after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.loadgen_cgroup import LOADGEN_SHARES, LoadGeneratorGroup
from loadtest.run import LocustRun
from newbank.runtime import cgroups

pytestmark = pytest.mark.integration


@pytest.fixture
def writable_cgroups() -> None:
    reason = cgroups.available()
    if reason:
        pytest.skip(f"cgroup v1 not writable here: {reason}")


def _cpu_group_of(output: str) -> str:
    """The cpu controller's path in a ``/proc/<pid>/cgroup`` text (``4:cpu,cpuacct:/newbank-…``)."""
    for line in output.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise AssertionError(f"no cpu controller in {output!r}")


def test_a_process_started_in_the_group_and_its_children_run_there(writable_cgroups: None) -> None:
    group = LoadGeneratorGroup.create()
    assert group.path is not None, group.why_not
    try:
        assert int((group.path / "cpu.shares").read_text()) == LOADGEN_SHARES
        assert int((group.path / "cpu.cfs_quota_us").read_text()) == -1  # a weight, never a cap
        # The process itself, and a child it forks (locust's --processes workers), both in the group.
        child = "import pathlib; print(pathlib.Path('/proc/self/cgroup').read_text())"
        script = f'cat /proc/self/cgroup; echo ---; {sys.executable} -c "{child}"'
        out = subprocess.run(group.wrap(["sh", "-c", script]), capture_output=True, text=True, check=True).stdout
        own, forked = out.split("---")
        expected = "/" + group.path.name
        assert _cpu_group_of(own.strip()) == expected
        assert _cpu_group_of(forked.strip()) == expected
    finally:
        group.remove()
    assert not group.path.exists()


def test_two_groups_of_one_process_do_not_collide(writable_cgroups: None) -> None:
    first, second = LoadGeneratorGroup.create(), LoadGeneratorGroup.create()
    try:
        assert first.path is not None and second.path is not None and first.path != second.path
    finally:
        first.remove()
        second.remove()
    assert not first.path.exists() and not second.path.exists()


def test_locust_started_and_finished_leaves_no_group(writable_cgroups: None, tmp_path: Path) -> None:
    """`LocustRun` makes the group at its start and removes it once locust has exited (a process that
    prints its own cgroups stands in for locust)."""
    run = LocustRun(tmp_path, "http://127.0.0.1:9")
    run.command = lambda: [sys.executable, "-c", "print(open('/proc/self/cgroup').read())"]  # type: ignore[method-assign]
    proc = run.start()
    assert run.group.path is not None and run.group.path.exists()
    assert run.finish(proc) == 0
    assert not run.group.path.exists()
    assert "/" + run.group.path.name in (tmp_path / "locust.log").read_text()
    assert "weighing 8192" in run.group.describe()


def test_without_the_group_locust_runs_as_it_is(tmp_path: Path) -> None:
    run = LocustRun(tmp_path, "http://127.0.0.1:9", cpu_group=False)
    run.command = lambda: [sys.executable, "-c", "pass"]  # type: ignore[method-assign]
    proc = run.start()
    assert run.finish(proc) == 0
    assert run.group.path is None
    assert "not in a CPU group of its own (not asked for)" in run.group.describe()
