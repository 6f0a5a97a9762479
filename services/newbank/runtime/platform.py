"""``newbank up`` and ``newbank down``: bring one local platform up in order, or stop it by PID.

Order up: etcd → PostgreSQL (Patroni primary + replica) ∥ RabbitMQ → HAProxy → the controller, which
starts the service instances and registers them. ``up`` is idempotent: what runs is left as it is.
On failure it names the component and its log, and stops what this run started.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable

from newbank.runtime import cgroups, procs
from newbank.runtime.instances import load_instances, log_file, stop_instance
from newbank.runtime.layout import DEFAULT_REPLICAS, MAX_INSTANCES, Layout
from newbank.runtime.scale_target import read_desired, write_desired
from newbank.runtime.status import controller_pid, controller_state
from newbank.runtime.supervisor import component_lock, hold, release

Say = Callable[[str], None]


def ensure_admin_token(layout: Layout) -> str:
    """``NEWBANK_ADMIN_TOKEN`` when set, else the saved one, else a new one (file mode 600)."""
    token = os.environ.get("NEWBANK_ADMIN_TOKEN", "")
    if not token and layout.admin_token_file.exists():
        token = layout.admin_token_file.read_text().strip()
    token = token or secrets.token_urlsafe(32)
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.admin_token_file.touch(mode=0o600)
    os.chmod(layout.admin_token_file, 0o600)
    layout.admin_token_file.write_text(token + "\n")
    return token


class _Step:
    """Times a start-up step and prints ``name ... ok (1.2 s)`` / ``already running``."""

    def __init__(self, say: Say, name: str) -> None:
        self.say, self.name, self.t0 = say, name, time.monotonic()

    def done(self, note: str = "ok") -> None:
        self.say(f"  {self.name:<28} {note} ({time.monotonic() - self.t0:.1f} s)")


def _start_controller(layout: Layout) -> int:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    proc = procs.spawn(
        [sys.executable, "-m", "newbank.runtime.controller", str(layout.home)],
        layout.controller_log,
        env=env,
        cwd=layout.home,
    )
    procs.write_pid(layout.controller_pid_file, proc.pid)
    return proc.pid


def _instances_ready(layout: Layout) -> tuple[bool, str]:
    """All wanted instances registered and answering ``/readyz``; else what is missing."""
    beat = controller_state(layout).get("heartbeat")
    if not isinstance(beat, int | float) or time.time() - beat > 5:
        return False, "controller heartbeat"
    desired = read_desired(layout)
    instances = load_instances(layout)
    for service, want in desired.items():
        mine = [i for i in instances if i.service == service]
        if len(mine) != min(want, MAX_INSTANCES[service]):
            return False, f"{service}: {len(mine)} of {want} instances"
        for inst in mine:
            if not (inst.alive() and inst.registered and inst.probe("/readyz")):
                return False, f"{inst.name} not ready"
    return True, ""


def wait_instances(layout: Layout, timeout_s: float = 240, say: Say | None = None) -> None:
    """Wait for the controller to report every instance ready; fail on an instance that keeps dying."""
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 15
    missing = ""
    while time.monotonic() < deadline:
        ok, missing = _instances_ready(layout)
        if ok:
            return
        if say is not None and time.monotonic() > next_note:
            next_note += 15
            say(f"  … still waiting ({missing})")
        if not controller_pid(layout):
            raise procs.StartupError("controller", "exited", layout.controller_log)
        for inst in load_instances(layout):
            if inst.failures >= 2:
                raise procs.StartupError(inst.name, "keeps exiting", log_file(layout, inst))
        errors = controller_state(layout).get("errors") or {}
        if isinstance(errors, dict):
            for name, message in errors.items():
                if "not ready after" in str(message) or "could not start" in str(message):
                    raise procs.StartupError(name, str(message), layout.logs / f"{name}.log")
        time.sleep(0.5)
    raise procs.StartupError("services", f"not ready after {timeout_s:.0f} s ({missing})", layout.controller_log)


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def check_ports_free(layout: Layout) -> None:
    """Before a fresh start: every port of the default topology must be free, or we say whose it is."""
    wanted = {"ingress": layout.ingress_port}
    wanted.update({name: port for name, port in layout.ports.items() if name != "transactions"})
    for slot in range(1, DEFAULT_REPLICAS["transactions"] + 1):
        wanted[f"transactions-{slot}"] = layout.instance_port("transactions", slot)
    taken = [f"{port} ({name})" for name, port in wanted.items() if _port_taken(port)]
    if taken:
        raise procs.StartupError(
            "ports",
            f"already in use: {', '.join(taken)}; choose others with NEWBANK_PORT, NEWBANK_PORT_BASE "
            "or NEWBANK_PORT_<NAME>",
        )


def up(layout: Layout, say: Say = print) -> None:
    """Start whatever of the platform is not running and wait until all of it is ready."""
    if not running_pids(layout):
        check_ports_free(layout)
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.save()
    ensure_admin_token(layout)
    if not controller_pid(layout):
        # A fresh start comes up with the default topology, whatever an earlier run was scaled to.
        write_desired(layout, dict(DEFAULT_REPLICAS))
    started: list[Callable[[], None]] = []
    etcd, cluster, rabbit = layout.etcd(), layout.pg_cluster(), layout.rabbitmq()
    try:
        step = _Step(say, "etcd")
        # Each start under the component's lock: a running controller's supervisor may restart the
        # same component meanwhile, and must not start a second copy.
        with component_lock(layout.home, "etcd"):
            if etcd.pid and etcd.healthy():
                step.done("already running")
            else:
                etcd.start()
                started.append(etcd.stop)
                step.done()

        def start_postgres() -> str:
            with component_lock(layout.home, "patroni-pg0"), component_lock(layout.home, "patroni-pg1"):
                if all(n.patroni_pid for n in cluster.nodes) and all(cluster.roles().values()):
                    cluster.ensure_databases()
                    return "already running"
                started.append(cluster.stop)
                cluster.start()  # starts only the members that are not running
                return "ok"

        def start_rabbitmq() -> str:
            with component_lock(layout.home, "rabbitmq"):
                if rabbit.pid and rabbit.ready():
                    return "already running"
                started.append(lambda: rabbit.stop(keep_epmd=False))
                rabbit.start(stop_system_epmd=True)
                return "ok"

        step = _Step(say, "postgresql + rabbitmq")
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            pg_future = pool.submit(start_postgres)
            mq_future = pool.submit(start_rabbitmq)
            notes = [pg_future.result(), mq_future.result()]
        roles = cluster.roles()
        step.done(f"postgresql {notes[0]} ({', '.join(f'{k}={v}' for k, v in roles.items())}), rabbitmq {notes[1]}")

        step = _Step(say, "haproxy")
        servers: dict[str, list[tuple[str, int]]] = {}
        for inst in load_instances(layout):
            if inst.registered:
                servers.setdefault(inst.service, []).append((inst.name, inst.port))
        haproxy = layout.haproxy(servers)
        if haproxy.pid:
            step.done("already running")
        else:
            haproxy.start()
            started.append(haproxy.stop)
            step.done()

        step = _Step(say, "controller + services")
        if controller_pid(layout):
            note = "already running"
        else:
            _start_controller(layout)
            started.append(lambda: stop_controller_and_instances(layout))
            note = "ok"
        wait_instances(layout, say=say)
        step.done(note)
        reason = cgroups.available()
        if reason:
            say(f"  note: services run without CPU/memory limits ({reason})")
    except BaseException:
        for stop in reversed(started):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                say(f"  (while stopping after the failure: {exc})")
        raise


def stop_controller_and_instances(layout: Layout) -> None:
    procs.stop_pid(procs.read_pid(layout.controller_pid_file), timeout_s=15)
    layout.controller_pid_file.unlink(missing_ok=True)
    instances = load_instances(layout)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(instances))) as pool:
        list(pool.map(lambda i: stop_instance(layout, i), instances))
    # Anything still in our cgroups (e.g. a child an instance forked) goes too.
    for inst in instances:
        for pid in cgroups.pids_in(layout.home, inst.name):
            procs.stop_pid(pid, timeout_s=5)
    cgroups.remove_all(layout.home)
    layout.instances_file.unlink(missing_ok=True)


INFRA_COMPONENTS = ("etcd", "patroni-pg0", "patroni-pg1", "rabbitmq")


def down(layout: Layout, *, purge: bool = False, say: Say = print) -> None:
    """Stop everything of this platform by PID, newest first; keep the data unless ``purge``.

    The controller goes first; the infrastructure is also held (``supervisor.hold``) while it stops, so
    that a controller slow to exit does not start again what ``down`` just stopped.
    """
    if layout.home.exists():
        for component in INFRA_COMPONENTS:
            hold(layout.home, component, "newbank down", ttl_s=600)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("controller + services", lambda: stop_controller_and_instances(layout)),
        ("haproxy", layout.haproxy().stop),
        ("rabbitmq + epmd", lambda: layout.rabbitmq().stop(keep_epmd=False)),
        ("postgresql (patroni)", layout.pg_cluster().stop),
        ("etcd", layout.etcd().stop),
    ]
    for name, stop in steps:
        t0 = time.monotonic()
        try:
            stop()
            say(f"  {name:<28} stopped ({time.monotonic() - t0:.1f} s)")
        except Exception as exc:
            say(f"  {name:<28} FAILED to stop: {exc}")
    for component in INFRA_COMPONENTS:
        release(layout.home, component)
    if purge:
        shutil.rmtree(layout.home, ignore_errors=True)
        say(f"  removed {layout.home}")


def running_pids(layout: Layout) -> dict[str, int]:
    """Every PID this platform knows of that is alive (for tests: nothing after ``down``)."""
    cluster = layout.pg_cluster()
    candidates: dict[str, int | None] = {
        "etcd": layout.etcd().pid,
        "rabbitmq": layout.rabbitmq().pid,
        "epmd": layout.rabbitmq().epmd_pid,
        "haproxy": layout.haproxy().pid,
        "controller": controller_pid(layout),
    }
    for node in cluster.nodes:
        candidates[f"patroni {node.name}"] = node.patroni_pid
        candidates[f"postmaster {node.name}"] = node.postmaster_pid
        for i, reaper in enumerate(node.reaper_pids):
            candidates[f"patroni reaper {node.name}" + (f" ({i})" if i else "")] = reaper
    for inst in load_instances(layout):
        candidates[inst.name] = inst.pid if inst.alive() else None
    return {name: pid for name, pid in candidates.items() if pid}
