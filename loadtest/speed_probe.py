"""How fast the machine was while a load ran: the CPU time of one fixed piece of work, timed again and again.

The machine's speed moves from one minute to the next, and a whole run moves with it: every process then
spends more CPU per payment. In twelve runs of the same load on one platform (``loadtest/README.md``, ninth
session), the four that carried the fewest payments/s were the four in which this piece of work took the most
CPU time. So each figure of ``newbank loadtest`` and of the scaling benchmark comes with the median CPU time
of the piece during its window (``probe ms``, lower = faster): two runs compare only when theirs are close.

It is CPU time (``time.thread_time``), not wall time: waiting for a core does not count, so it measures the
speed of the cores the probe got, not how busy they were. About 8 ms of work every 0.5 s: under 2 % of a core.

    python -m loadtest.speed_probe            # prints "epoch cpu_ms" lines until stopped
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ITERATIONS = 150_000
INTERVAL_S = 0.5


def fixed_work(iterations: int = ITERATIONS) -> int:
    """Pure interpreter work on small integers: it stays in the CPU's caches and makes no system call."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def timed_work(iterations: int = ITERATIONS) -> float:
    """CPU milliseconds one run of the fixed work took in this thread."""
    start = time.thread_time()
    fixed_work(iterations)
    return (time.thread_time() - start) * 1000


def parse_samples(text: str) -> list[tuple[float, float]]:
    """(epoch second, CPU ms) from the probe's output; a torn last line is skipped."""
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return samples


def median_ms(samples: list[tuple[float, float]], start: float = -math.inf, end: float = math.inf) -> float:
    """Median CPU ms of the samples taken in [start, end]; NaN when there are none."""
    inside = [ms for at, ms in samples if start <= at <= end]
    return statistics.median(inside) if inside else math.nan


class SpeedProbe:
    """The probe as a child process between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval_s: float = INTERVAL_S, iterations: int = ITERATIONS) -> None:
        self.interval_s = interval_s
        self.iterations = iterations
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self.samples: list[tuple[float, float]] = []

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._out = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "loadtest.speed_probe", "--interval", str(self.interval_s)]
        # The parent's PID from here: it may be killed before the child has read its own parent.
        command += ["--iterations", str(self.iterations), "--parent", str(os.getpid())]
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(command, stdout=self._out, stderr=subprocess.DEVNULL, cwd=root)

    def stop(self) -> float:
        """Stop the probe (by its PID) and return the median CPU ms of the piece while it ran."""
        if self._proc is None or self._out is None:
            return math.nan
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._out.seek(0)
        self.samples = parse_samples(self._out.read().decode(errors="replace"))
        self._out.close()
        self._proc, self._out = None, None
        return median_ms(self.samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=INTERVAL_S, help="seconds between two pieces")
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="size of the piece")
    parser.add_argument("--parent", type=int, default=None, help="stop when this process is gone (default: mine)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = args.parent if args.parent is not None else os.getppid()
    while os.getppid() == parent:  # a parent killed before it could stop the probe: the probe ends itself
        ms = timed_work(args.iterations)
        sys.stdout.write(f"{time.time():.3f} {ms:.3f}\n")
        sys.stdout.flush()
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
