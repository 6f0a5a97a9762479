"""A CPU group for the load generator, so that what locust times is the platform, not its own wait for a core.

On this 2-core machine locust shares the cores with the platform. As one task of the root cgroup it
weighed 1024 against the platform's groups and the PostgreSQL backends, and under load it waited in the
run queue 3.6 times as long as it ran (``/proc/<pid>/schedstat``, ~175 payments/s: running 0.21 s and
waiting 0.77 s of each second), so each answer waited its turn before locust read it and stopped the
clock. Saturated, locust's p50 was 968–1,086 ms against 237–298 ms at the ingress; at ~155 payments/s
109–212 ms against 48–83. In a group weighing what a transaction instance weighs (``cpu.shares`` 8192,
no quota: it uses only the CPU its requests need, but gets it when it needs it) the two p50s were 5–19
ms apart. A merchant's client has a machine of its own; the issue asks to "pin processes where that
makes the figures cleaner".

Without writable cgroup v1 (no root, cgroup v2 only) locust runs as before and the summary says so.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

try:  # the platform's own cgroup helpers; absent when only the load tools are installed
    from newbank.runtime import cgroups
except ImportError:  # pragma: no cover - the load tools alone, against a remote ingress
    cgroups = None  # type: ignore[assignment]

LOADGEN_SHARES = 8192
_serial = itertools.count(1)


@dataclass
class LoadGeneratorGroup:
    """One run's CPU group (``/sys/fs/cgroup/cpu/newbank-loadgen-<pid>-<n>``), or why there is none."""

    path: Path | None
    why_not: str = ""

    @classmethod
    def create(cls) -> LoadGeneratorGroup:
        if cgroups is None:
            return cls(None, "the newbank package is not installed")
        unavailable = cgroups.available()
        if unavailable:
            return cls(None, unavailable)
        path = cgroups.CGROUP_ROOT / "cpu" / f"newbank-loadgen-{os.getpid()}-{next(_serial)}"
        try:
            path.mkdir(exist_ok=True)
            (path / "cpu.shares").write_text(str(LOADGEN_SHARES))
        except OSError as exc:
            return cls(None, f"could not make {path}: {exc}")
        return cls(path)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the group (same PID; its children stay in it), or as it is."""
        return argv if self.path is None else cgroups.join_and_exec([self.path / "cgroup.procs"], argv)

    def describe(self) -> str:
        if self.path is None:
            return f"locust not in a CPU group of its own ({self.why_not})"
        return f"locust in a CPU group weighing {LOADGEN_SHARES} ({self.path})"

    def remove(self, wait_s: float = 3.0) -> None:
        """Remove the group once locust has exited (retrying while its last threads leave)."""
        if self.path is not None:
            cgroups.rmdir_retrying(self.path, time.monotonic() + wait_s)
