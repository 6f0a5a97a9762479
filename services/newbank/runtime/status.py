"""What runs of one local platform: a row per component for ``newbank status`` (and for ``up``)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from newbank.runtime import cgroups, procs
from newbank.runtime.instances import load_instances
from newbank.runtime.layout import Layout
from newbank.runtime.supervisor import active_hold, read_status


@dataclass
class Row:
    component: str
    role: str
    pid: str
    port: str
    limits: str
    ready: bool
    restarts: int = 0  # by the controller (instances) or its supervisor (etcd, Patroni, RabbitMQ)
    note: str = ""  # a hold, the last restart, the last restart error


def controller_state(layout: Layout) -> dict[str, object]:
    try:
        return dict(json.loads((layout.home / "controller.json").read_text()))
    except (OSError, ValueError):
        return {}


def controller_pid(layout: Layout) -> int | None:
    pid = procs.read_pid(layout.controller_pid_file)
    return pid if procs.pid_alive(pid) else None


def _supervised(layout: Layout, row: Row, component: str, infra: dict[str, dict[str, object]]) -> Row:
    """Fill in what the supervisor did to ``component`` (restarts, when, a hold on it)."""
    state = infra.get(component) or {}
    restarts = state.get("restarts")
    row.restarts = restarts if isinstance(restarts, int) else 0
    notes = []
    entry = active_hold(layout.home, component)
    if entry is not None:
        notes.append(f"held: {entry.reason} ({entry.left_s():.0f} s left)")
    last = state.get("last_restart_at")
    if isinstance(last, int | float):
        notes.append(f"restarted {time.strftime('%H:%M:%S', time.localtime(last))}")
    if state.get("last_error"):
        notes.append(f"restart failed: {state['last_error']}")
    row.note = "; ".join(notes)
    return row


def collect(layout: Layout, *, probe_instances: bool = True) -> list[Row]:
    """Ask every component (by PID file and by its own health endpoint) how it is."""
    rows: list[Row] = []
    infra = read_status(layout)
    etcd = layout.etcd()
    etcd_row = Row("etcd", "dcs", str(etcd.pid or "-"), str(etcd.client_port), "-", bool(etcd.pid and etcd.healthy()))
    rows.append(_supervised(layout, etcd_row, "etcd", infra))
    cluster = layout.pg_cluster()
    for node in cluster.nodes:
        role = node.role() if node.patroni_pid else None
        pids = f"{node.postmaster_pid or '-'}/{node.patroni_pid or '-'}"
        ready = role in ("primary", "replica")
        row = Row(f"postgresql {node.name}", role or "-", pids, str(node.pg_port), "-", ready)
        rows.append(_supervised(layout, row, f"patroni-{node.name}", infra))
    rabbit = layout.rabbitmq()
    rows.append(
        _supervised(
            layout,
            Row(
                "rabbitmq",
                "broker",
                str(rabbit.pid or "-"),
                f"{rabbit.amqp_port} (mgmt {rabbit.management_port})",
                "-",
                bool(rabbit.pid and rabbit.ready()),
            ),
            "rabbitmq",
            infra,
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
                inst.restarts,
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    header = ("COMPONENT", "ROLE", "PID", "PORT", "CPU / MEMORY LIMIT", "READY", "RESTARTS", "NOTE")
    table = [header] + [
        (r.component, r.role, r.pid, r.port, r.limits, "yes" if r.ready else "NO", str(r.restarts), r.note)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in table)


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)
