"""The runtime's cgroups are removed even while their last process is still leaving them.

A process with threads becomes a zombie before its threads are gone; ``procs.stop_pid`` counts a
zombie as stopped, so the group can still be busy when it is removed (CI saw the framework ceiling's
group left behind). Real cgroup v1 groups, real processes.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from newbank.runtime import cgroups, procs

# A process whose exit takes a while: many threads, each in a sleep the exit has to interrupt.
MANY_THREADS = (
    "import threading, time\n"
    "for _ in range(200): threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def writable_cgroups() -> None:
    reason = cgroups.available()
    if reason:
        pytest.skip(f"cgroup v1 not writable here: {reason}")


def _group_paths(home: Path) -> list[Path]:
    """Every group of ``home`` there is: the platform's groups, and the cpu groups of its own."""
    name = cgroups.group_name(home)
    platform = [cgroups.CGROUP_ROOT / controller / name for controller in ("cpu", "memory")]
    return [path for path in platform if path.exists()] + sorted((cgroups.CGROUP_ROOT / "cpu").glob(f"{name}-*"))


def _start_in_group(home: Path, instance: str, service: str = "accounts") -> int:
    joins = cgroups.prepare(home, instance, cgroups.LIMITS[service])
    argv = cgroups.join_and_exec(joins, [sys.executable, "-c", MANY_THREADS])
    pid = procs.spawn(argv, home / f"{instance}.log").pid
    procs.wait_until(lambda: pid in cgroups.pids_in(home, instance), timeout_s=10)
    return pid


@pytest.mark.usefixtures("writable_cgroups")
def test_remove_all_waits_for_a_process_still_leaving_its_group(tmp_path: Path) -> None:
    pid = _start_in_group(tmp_path, "busy")
    # Its exit starts shortly after the removal does: the first rmdir finds the group busy.
    threading.Timer(0.5, procs.kill_pid, args=(pid,)).start()
    try:
        cgroups.remove_all(tmp_path, wait_s=10)
        assert _group_paths(tmp_path) == []
    finally:
        procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
        procs.reap(pid)
        cgroups.remove_all(tmp_path)


@pytest.mark.usefixtures("writable_cgroups")
def test_remove_all_right_after_stop_leaves_no_group(tmp_path: Path) -> None:
    for attempt in range(6):
        home = tmp_path / str(attempt)
        # A guaranteed instance's cpu group is inside the platform's, the others' beside it.
        pid = _start_in_group(home, "instance", "transactions" if attempt % 2 else "accounts")
        procs.stop_pid(pid, timeout_s=10)
        procs.reap(pid)
        cgroups.remove_all(home)
        assert _group_paths(home) == [], f"attempt {attempt}"


@pytest.mark.usefixtures("writable_cgroups")
def test_remove_all_gives_up_on_a_group_that_stays_busy(tmp_path: Path) -> None:
    pid = _start_in_group(tmp_path, "alive")
    try:
        cgroups.remove_all(tmp_path, wait_s=0.5)  # returns, does not hang or raise
        name = cgroups.group_name(tmp_path)
        assert (cgroups.CGROUP_ROOT / "cpu" / f"{name}-alive").is_dir()
        assert (cgroups.CGROUP_ROOT / "memory" / name / "alive").is_dir()
        assert pid in cgroups.pids_in(tmp_path, "alive")
    finally:
        procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
        procs.reap(pid)
        cgroups.remove_all(tmp_path)
    assert _group_paths(tmp_path) == []


@pytest.mark.usefixtures("writable_cgroups")
def test_only_the_transaction_instances_are_guaranteed_their_cpu(tmp_path: Path) -> None:
    """Their groups weigh eight processes, inside the platform's group of the same weight; each other
    service's group weighs one process, beside it. The limits read back are those asked for."""
    try:
        for instance, service in (("transactions-1", "transactions"), ("cashback-1", "cashback")):
            cgroups.prepare(tmp_path, instance, cgroups.LIMITS[service])
            assert cgroups.read_limits(tmp_path, instance) == cgroups.LIMITS[service]
        assert cgroups.read_shares(tmp_path, "transactions-1") == (8192, 8192)
        assert cgroups.read_shares(tmp_path, "cashback-1") == (1024,)
        name = cgroups.group_name(tmp_path)
        assert (cgroups.CGROUP_ROOT / "cpu" / name / "transactions-1").is_dir()
        assert (cgroups.CGROUP_ROOT / "cpu" / f"{name}-cashback-1").is_dir()
    finally:
        cgroups.remove_all(tmp_path)
    assert _group_paths(tmp_path) == []
