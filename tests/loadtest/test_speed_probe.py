"""The machine-speed probe: its arithmetic, and the real child process started and stopped by its PID."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loadtest.speed_probe import SpeedProbe, median_ms, parse_samples, timed_work


def test_samples_are_read_and_a_torn_line_skipped() -> None:
    text = "100.0 8.5\n100.5 9.5\nnot a sample\n101.0 7.5\n101.5 8."
    assert parse_samples(text) == [(100.0, 8.5), (100.5, 9.5), (101.0, 7.5), (101.5, 8.0)]
    assert parse_samples("101.5 8.2 extra\n101.6") == []


def test_median_over_a_window() -> None:
    samples = [(100.0, 20.0), (100.5, 8.0), (101.0, 9.0), (101.5, 10.0), (102.0, 30.0)]
    assert median_ms(samples) == 10.0
    assert median_ms(samples, start=100.5, end=101.5) == 9.0
    assert math.isnan(median_ms(samples, start=200.0))
    assert math.isnan(median_ms([]))


def test_the_piece_costs_cpu_in_proportion_to_its_size() -> None:
    small = min(timed_work(15_000) for _ in range(3))
    large = min(timed_work(150_000) for _ in range(3))
    assert small > 0
    assert large > 3 * small  # ten times the work; CPU time, so a busy machine does not blur it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone too
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_probe_runs_as_a_child_and_is_stopped_by_its_pid() -> None:
    probe = SpeedProbe(interval_s=0.1, iterations=20_000)
    probe.start()
    pid = probe.pid
    assert pid is not None and _alive(pid)
    time.sleep(1.5)
    median = probe.stop()
    assert not _alive(pid)
    assert probe.pid is None
    assert len(probe.samples) >= 4
    assert all(ms > 0 for _, ms in probe.samples)
    assert median == statistics.median(ms for _, ms in probe.samples)
    stamps = [at for at, _ in probe.samples]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 0.5


def test_a_probe_never_started_measures_nothing() -> None:
    assert math.isnan(SpeedProbe().stop())


def test_the_probe_ends_itself_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A load test killed with SIGKILL cannot stop its probe: the probe must not run on forever."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); from loadtest.speed_probe import SpeedProbe; "
            "p = SpeedProbe(interval_s=0.1, iterations=1000); p.start(); print(p.pid, flush=True); time.sleep(60)",
            str(Path(__file__).resolve().parents[2]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
