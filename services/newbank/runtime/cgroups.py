"""cgroup v1 CPU and memory limits per service instance (the same limits as the Helm chart).

Layout: memory groups ``/sys/fs/cgroup/memory/newbank-<hash of the state folder>/<instance>``; CPU
groups ``/sys/fs/cgroup/cpu/newbank-<hash>/<instance>`` for the transaction instances and
``/sys/fs/cgroup/cpu/newbank-<hash>-<instance>`` for the other services (their weights differ, below).
Two copies of the platform (``newbank up`` and a test's own) never share a group. A process joins its
groups before it ``exec``s the service (a tiny ``sh`` wrapper), so no allocation escapes the limit.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path(os.environ.get("NEWBANK_CGROUP_ROOT", "/sys/fs/cgroup"))
CFS_PERIOD_US = 100_000
MIB = 1024 * 1024
# The chart's requests equal its limits, so on Kubernetes an instance gets its CPU even on a busy
# node. Here the platform's other processes (PostgreSQL backends, RabbitMQ, HAProxy, locust) are
# tasks of the root group, each weighing 1024 against a whole group: under load the instances got
# ~0.3 core between them, and the transaction instance, whose queue is the payments' queue, ~0.3 of
# its 0.5. The weight of eight such tasks, for the platform's group and for each transaction
# instance's group, gives each its request again (the quota still caps it at its limit). Measured
# side by side (1 instance, 1000 users): 205/206 → 273/275 payments/s, p99 3.5 → 2.0–2.5 s.
GUARANTEED_SHARES = 8192
# The other services (accounts, partners, cashback) weigh what one of those tasks weighs, each in a
# group of its own: with the transaction instance's weight they outranked the PostgreSQL backends and
# HAProxy that every payment waits for, while their own work (the cashback of past payments, the
# customers' and visitors' reads) can wait its turn. Measured side by side (1 instance, 1000 users,
# ~160 payments/s, 8 alternated pairs): the payments' p99 at the ingress 444 ms against 706 (lower in
# 7 of 8 pairs), their p50 45 against 67 ms (8 of 8); the cashback lag did not move beyond the scatter,
# and the reads of those services were ~9 ms slower at the median, not at the p99. Nearer saturation
# (~170 payments/s, 8 more pairs) the p99 did not separate (863 against 878 ms); the p50 did (101 / 148).
PROCESS_SHARES = 1024


@dataclass(frozen=True)
class Limits:
    cpu_quota_us: int  # per CFS_PERIOD_US: 30_000 = 30 % of one CPU
    memory_bytes: int
    # True: in the platform's group, guaranteed its CPU (GUARANTEED_SHARES); False: a group of its own
    # beside the machine's processes, weighing one of them (PROCESS_SHARES).
    guaranteed: bool = False

    def describe(self) -> str:
        return f"{self.cpu_quota_us * 100 // CFS_PERIOD_US}% CPU / {self.memory_bytes // MIB} MiB"


LIMITS: dict[str, Limits] = {
    "accounts": Limits(30_000, 200 * MIB),
    "partners": Limits(30_000, 200 * MIB),
    "cashback": Limits(30_000, 200 * MIB),
    "transactions": Limits(50_000, 300 * MIB, guaranteed=True),
}


def group_name(home: Path) -> str:
    digest = hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:10]
    return f"newbank-{digest}"


def available() -> str | None:
    """None when cgroup v1 cpu+memory can be written here, else why not."""
    for controller in ("cpu", "memory"):
        path = CGROUP_ROOT / controller
        if not path.is_dir():
            return f"no cgroup v1 '{controller}' controller at {path}"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
    return None


def _cpu_dir(home: Path, instance: str, *, guaranteed: bool) -> Path:
    name = group_name(home)
    return CGROUP_ROOT / "cpu" / name / instance if guaranteed else CGROUP_ROOT / "cpu" / f"{name}-{instance}"


def _group_dirs(home: Path, instance: str) -> tuple[Path, Path]:
    """The instance's cpu and memory groups; the cpu group where it was made (or would be, unguaranteed)."""
    inside = _cpu_dir(home, instance, guaranteed=True)
    cpu_dir = inside if inside.is_dir() else _cpu_dir(home, instance, guaranteed=False)
    return cpu_dir, CGROUP_ROOT / "memory" / group_name(home) / instance


def prepare(home: Path, instance: str, limits: Limits) -> list[Path]:
    """Create the instance's groups with their limits; returns the ``cgroup.procs`` files to join."""
    cpu_dir = _cpu_dir(home, instance, guaranteed=limits.guaranteed)
    mem_dir = CGROUP_ROOT / "memory" / group_name(home) / instance
    cpu_dir.mkdir(parents=True, exist_ok=True)
    mem_dir.mkdir(parents=True, exist_ok=True)
    if limits.guaranteed:
        (cpu_dir.parent / "cpu.shares").write_text(str(GUARANTEED_SHARES))
    (cpu_dir / "cpu.shares").write_text(str(GUARANTEED_SHARES if limits.guaranteed else PROCESS_SHARES))
    (cpu_dir / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
    (cpu_dir / "cpu.cfs_quota_us").write_text(str(limits.cpu_quota_us))
    (mem_dir / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
    return [cpu_dir / "cgroup.procs", mem_dir / "cgroup.procs"]


def join_and_exec(procs_files: list[Path], argv: list[str]) -> list[str]:
    """``argv`` wrapped so the process joins the groups, then becomes the service (same PID)."""
    joins = " && ".join(f"echo $$ > {f}" for f in procs_files)
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "newbank-instance", *argv]


def read_shares(home: Path, instance: str) -> tuple[int, ...] | None:
    """The CPU weights on the way from the root group to the instance's group: (platform's group,
    instance's group) for a guaranteed instance, (instance's group,) for the others; None when absent."""
    cpu_dir, _ = _group_dirs(home, instance)
    path = [cpu_dir.parent, cpu_dir] if cpu_dir.parent != CGROUP_ROOT / "cpu" else [cpu_dir]
    try:
        return tuple(int((group / "cpu.shares").read_text()) for group in path)
    except (OSError, ValueError):
        return None


def read_limits(home: Path, instance: str) -> Limits | None:
    """The limits the kernel holds for ``instance`` (None when it has no groups)."""
    cpu_dir, mem_dir = _group_dirs(home, instance)
    try:
        quota = int((cpu_dir / "cpu.cfs_quota_us").read_text())
        memory = int((mem_dir / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return None
    return Limits(quota, memory, guaranteed=cpu_dir.parent != CGROUP_ROOT / "cpu")


def pids_in(home: Path, instance: str) -> list[int]:
    cpu_dir, _ = _group_dirs(home, instance)
    try:
        return [int(p) for p in (cpu_dir / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def rmdir_retrying(path: Path, deadline: float) -> None:
    """``rmdir`` a group, retrying while it is busy: a process that has just exited (a zombie whose
    threads are still leaving, or one not yet reaped) keeps its group populated for a moment."""
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


def remove(home: Path, instance: str, *, wait_s: float = 3.0) -> None:
    """Remove the instance's groups (retrying for up to ``wait_s`` while they are busy)."""
    deadline = time.monotonic() + wait_s
    for path in _group_dirs(home, instance):
        rmdir_retrying(path, deadline)


def remove_all(home: Path, *, wait_s: float = 3.0) -> None:
    """Remove every group of ``home`` and its parent (retrying for up to ``wait_s`` while busy)."""
    deadline = time.monotonic() + wait_s
    name = group_name(home)
    for controller in ("cpu", "memory"):
        parent = CGROUP_ROOT / controller / name
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir():
                    rmdir_retrying(child, deadline)
            rmdir_retrying(parent, deadline)
        for alone in (CGROUP_ROOT / controller).glob(f"{name}-*"):
            if alone.is_dir():
                rmdir_retrying(alone, deadline)
