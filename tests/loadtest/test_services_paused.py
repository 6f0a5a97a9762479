"""Holding the services still for the database ceiling: real processes stopped and continued by PID,
and a watchdog that continues them when the caller cannot (it ran out of time, or it was killed)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.pipeline_drain import Drain, format_drain
from loadtest.services_paused import process_state, processes_paused

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sleepers() -> Iterator[list[int]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()  # SIGKILL ends a stopped process too
            proc.wait()


def _wait_state(pid: int, wanted: bool, timeout_s: float = 5) -> bool:
    """Whether ``pid`` becomes stopped (``wanted``) or not stopped within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (process_state(pid) == "T") == wanted:
            return True
        time.sleep(0.05)
    return False


def _watchdogs() -> list[int]:
    """Watchdog shells of this module still running (``sleep N; kill -CONT …``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"kill -CONT" in argv and entry.name.isdigit():
            found.append(int(entry.name))
    return found


def test_processes_are_stopped_inside_and_run_again_after(sleepers: list[int]) -> None:
    with processes_paused(sleepers, max_s=30) as stopped:
        assert stopped == sorted(sleepers)
        assert all(_wait_state(pid, True) for pid in sleepers)
    assert all(_wait_state(pid, False) for pid in sleepers)
    assert not _watchdogs()  # the watchdog (and its sleep) went with the block


def test_the_watchdog_continues_them_when_the_block_runs_too_long(sleepers: list[int]) -> None:
    with processes_paused(sleepers, max_s=0.5):
        assert all(_wait_state(pid, True) for pid in sleepers)
        assert all(_wait_state(pid, False, timeout_s=5) for pid in sleepers)  # still inside the block


def test_a_killed_caller_leaves_nothing_stopped(sleepers: list[int]) -> None:
    code = (
        "import sys, time; from loadtest.services_paused import processes_paused\n"
        f"with processes_paused({sleepers!r}, max_s=1.0):\n"
        "    print('paused', flush=True); time.sleep(60)\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    assert caller.stdout is not None and caller.stdout.readline().strip() == b"paused"
    assert all(_wait_state(pid, True) for pid in sleepers)
    caller.kill()  # no finally runs
    caller.wait()
    assert all(_wait_state(pid, False, timeout_s=5) for pid in sleepers)


def test_gone_processes_and_the_caller_itself_are_left_out(sleepers: list[int]) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with processes_paused([gone.pid, *sleepers, 1], max_s=30) as stopped:
        assert stopped == sorted(sleepers)


def test_the_drain_line_says_cost_per_payment_and_what_is_left() -> None:
    drain = Drain(payments=1000, pending=0, seconds=2.0, cpu={"machine": 1.5, "postgres": 0.5, "haproxy": 0.0})
    assert drain.settled and drain.per_s == 500.0
    assert drain.ms_per_payment() == pytest.approx(3.0) and drain.ms_per_payment("postgres") == pytest.approx(1.0)
    line = format_drain(drain)
    assert "1000 payments' cashback settled in 2.0 s (500.0/s)" in line
    assert "machine 3.00 (postgres 1.00)" in line  # a group that used nothing is not listed
    late = Drain(payments=10, pending=3, seconds=120.0)
    assert "NOT settled (3 still pending)" in format_drain(late)
    empty = Drain(payments=0, pending=0, seconds=1.0)
    assert math.isnan(empty.ms_per_payment()) and format_drain(empty).endswith("no payment to settle")
