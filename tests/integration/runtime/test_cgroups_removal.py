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
    name = cgroups.group_name(home)
    return [cgroups.CGROUP_ROOT / controller / name for controller in ("cpu", "memory")]


def _start_in_group(home: Path, instance: str) -> int:
    joins = cgroups.prepare(home, instance, cgroups.LIMITS["accounts"])
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
        assert not any(path.exists() for path in _group_paths(tmp_path))
    finally:
        procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
        procs.reap(pid)
        cgroups.remove_all(tmp_path)


@pytest.mark.usefixtures("writable_cgroups")
def test_remove_all_right_after_stop_leaves_no_group(tmp_path: Path) -> None:
    for attempt in range(5):
        home = tmp_path / str(attempt)
        pid = _start_in_group(home, "instance")
        procs.stop_pid(pid, timeout_s=10)
        procs.reap(pid)
        cgroups.remove_all(home)
        assert not any(path.exists() for path in _group_paths(home)), f"attempt {attempt}"


@pytest.mark.usefixtures("writable_cgroups")
def test_remove_all_gives_up_on_a_group_that_stays_busy(tmp_path: Path) -> None:
    pid = _start_in_group(tmp_path, "alive")
    try:
        cgroups.remove_all(tmp_path, wait_s=0.5)  # returns, does not hang or raise
        assert all(path.exists() for path in _group_paths(tmp_path))
        assert pid in cgroups.pids_in(tmp_path, "alive")
    finally:
        procs.stop_pid(pid, timeout_s=5, sig=signal.SIGKILL)
        procs.reap(pid)
        cgroups.remove_all(tmp_path)
    assert not any(path.exists() for path in _group_paths(tmp_path))
