"""CPU used by groups of processes over a window, from ``/proc`` (no dependency, no sampling thread).

The load generator shares the machine's 2 cores with the platform, so every figure the benchmark
prints comes with what the transaction instances, locust and the whole machine burnt meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the ``)`` of comm (state is field 0, ppid 1, utime 11, stime 12);
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads) so far; 0 when it is gone."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (locust's --processes children, a shell's exec'd child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, summed over cores (first line of /proc/stat)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class CpuWindow:
    """Cores used per group between :meth:`start` and :meth:`stop` (1.0 = one full core)."""

    groups: dict[str, Callable[[], Iterable[int]]]

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine0 = machine_busy_seconds()
        self._pids = {name: list(pids()) for name, pids in self.groups.items()}
        self._cpu0 = {name: {p: process_cpu_seconds(p) for p in pids} for name, pids in self._pids.items()}

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        used: dict[str, float] = {}
        for name, pids in self.groups.items():
            # Processes that appeared meanwhile count from 0; one that vanished is not counted.
            now = {p: process_cpu_seconds(p) for p in set(pids()) | set(self._pids[name])}
            total = sum(max(now[p] - self._cpu0[name].get(p, 0.0), 0.0) for p in now)
            used[name] = total / wall
        used["machine"] = (machine_busy_seconds() - self._machine0) / wall
        return used
