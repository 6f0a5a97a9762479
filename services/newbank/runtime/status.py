"""What runs of one local platform: a row per component for ``newbank status`` (and for ``up``)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from newbank.runtime import cgroups, procs
from newbank.runtime.instances import load_instances
from newbank.runtime.layout import Layout


@dataclass
class Row:
    component: str
    role: str
    pid: str
    port: str
    limits: str
    ready: bool


def controller_state(layout: Layout) -> dict[str, object]:
    try:
        return dict(json.loads((layout.home / "controller.json").read_text()))
    except (OSError, ValueError):
        return {}


def controller_pid(layout: Layout) -> int | None:
    pid = procs.read_pid(layout.controller_pid_file)
    return pid if procs.pid_alive(pid) else None


def collect(layout: Layout, *, probe_instances: bool = True) -> list[Row]:
    """Ask every component (by PID file and by its own health endpoint) how it is."""
    rows: list[Row] = []
    etcd = layout.etcd()
    rows.append(Row("etcd", "dcs", str(etcd.pid or "-"), str(etcd.client_port), "-", bool(etcd.pid and etcd.healthy())))
    cluster = layout.pg_cluster()
    for node in cluster.nodes:
        role = node.role() if node.patroni_pid else None
        pids = f"{node.postmaster_pid or '-'}/{node.patroni_pid or '-'}"
        ready = role in ("primary", "replica")
        rows.append(Row(f"postgresql {node.name}", role or "-", pids, str(node.pg_port), "-", ready))
    rabbit = layout.rabbitmq()
    rows.append(
        Row(
            "rabbitmq",
            "broker",
            str(rabbit.pid or "-"),
            f"{rabbit.amqp_port} (mgmt {rabbit.management_port})",
            "-",
            bool(rabbit.pid and rabbit.ready()),
        )
    )
    haproxy = layout.haproxy()
    rows.append(
        Row(
            "haproxy",
            "ingress",
            str(haproxy.pid or "-"),
            str(haproxy.port),
            "-",
            bool(haproxy.pid and procs.port_open(haproxy.port)),
        )
    )
    ctl_pid = controller_pid(layout)
    beat = controller_state(layout).get("heartbeat")
    fresh = isinstance(beat, int | float) and time.time() - beat < 10
    rows.append(Row("controller", "supervisor", str(ctl_pid or "-"), "-", "-", bool(ctl_pid and fresh)))
    for inst in sorted(load_instances(layout), key=lambda i: (i.service, i.slot)):
        alive = inst.alive()
        limits = cgroups.read_limits(layout.home, inst.name) if inst.limited else None
        ready = alive and inst.registered and (not probe_instances or inst.probe("/readyz"))
        rows.append(
            Row(
                inst.name,
                "instance",
                str(inst.pid if alive else "-"),
                str(inst.port),
                limits.describe() if limits else "unlimited",
                ready,
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    header = ("COMPONENT", "ROLE", "PID", "PORT", "CPU / MEMORY LIMIT", "READY")
    table = [header] + [(r.component, r.role, r.pid, r.port, r.limits, "yes" if r.ready else "NO") for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in table)


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)
