"""Is the platform whole? Used before a run (each scenario starts from a healthy platform) and after.

Healthy = a PostgreSQL primary and a synchronous streaming replica, RabbitMQ answering, HAProxy up,
the controller alive, and every wanted service instance alive, registered and UP in HAProxy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from newbank.runtime import procs
from newbank.runtime.instances import load_instances
from newbank.runtime.layout import Layout
from newbank.runtime.platform import running_pids
from newbank.runtime.scale_target import read_desired
from newbank.runtime.status import collect


def problems(layout: Layout) -> list[str]:
    """What is not healthy right now (empty = healthy)."""
    found = [f"{row.component} not ready" for row in collect(layout) if not row.ready]
    cluster = layout.pg_cluster()
    roles = sorted(str(r) for r in cluster.roles().values())
    if roles != ["primary", "replica"]:
        found.append(f"postgresql roles {roles}")
    elif not any(n.is_sync_standby() for n in cluster.nodes):
        found.append("no synchronous standby")
    desired = read_desired(layout)
    instances = load_instances(layout)
    for service, want in desired.items():
        have = sum(1 for i in instances if i.service == service and i.alive())
        if have != want:
            found.append(f"{service}: {have} of {want} instances")
    haproxy = layout.haproxy()
    if haproxy.pid:
        for inst in instances:
            state = haproxy.server_states(inst.service).get(inst.name, {}).get("status", "absent")
            if not state.startswith("UP"):
                found.append(f"haproxy {inst.name} {state}")
    return found


def wait_healthy(layout: Layout, timeout_s: float = 120) -> float:
    """Seconds until healthy; raises TimeoutError naming what is still wrong."""
    t0 = time.monotonic()
    last: list[str] = []
    while time.monotonic() - t0 < timeout_s:
        try:
            last = problems(layout)
        except Exception as exc:  # a component mid-restart may answer nothing at all
            last = [f"{exc.__class__.__name__}: {exc}"]
        if not last:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(f"platform not healthy after {timeout_s:.0f} s: {'; '.join(last)}")


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def processes_of(home: Path) -> dict[int, str]:
    """Every live process whose command line names the platform's state folder."""
    found: dict[int, str] = {}
    marker = str(home).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and procs.pid_alive(int(entry)):
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
    return found


def strays(layout: Layout, killed: list[int]) -> list[str]:
    """Processes left behind: a killed PID still alive, or a process of this platform nobody owns.

    A process is owned when it or one of its ancestors is a PID the platform knows (its PID files and
    instance table) — postgres backends under their postmaster, Erlang children under the broker.
    """
    known = set(running_pids(layout).values())
    ours, cursor = set(), os.getpid()  # this process and its parents (a CLI run names --home too)
    while cursor > 1 and len(ours) < 50:
        ours.add(cursor)
        cursor = _ppid(cursor)
    left = [f"killed pid {pid} still alive" for pid in killed if procs.pid_alive(pid)]
    for pid, cmdline in processes_of(layout.home).items():
        chain, cursor = [], pid
        while cursor > 1 and cursor not in known and len(chain) < 20:
            chain.append(cursor)
            cursor = _ppid(cursor)
        if cursor not in known and pid not in ours:
            left.append(f"pid {pid} owned by nothing the platform knows: {cmdline}")
    return left
