"""HAProxy 2.6 as the ingress: prefix routing, health checks, and live add/remove of instances.

The config is generated from the list of instances; afterwards instances come and go through the
runtime API (a unix socket with ``level admin``). Every slot an instance may take (its name and port
are fixed by the layout) is declared in the config, parked in maintenance until an instance takes it:
HAProxy 2.6 never reuses a server-side connection to a server created at run time (``add server``), so
each request to one cost a TCP connection and its set-up in the instance (measured: connects = requests).
A slot is taken by ``enable``-ing it and waiting for its health check; it is given back by ``drain`` →
no sessions left → ``disable`` (only then is its process stopped). A server with a name outside the
slots is ``add``-ed and, on leaving, ``del``-eted.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from newbank.runtime import procs

HAPROXY_BIN = "/usr/sbin/haproxy"
SERVICES = ("accounts", "transactions", "partners", "cashback")

# Public path prefixes → the service that owns them (API.md). ``/internal/...`` is never routed.
ROUTES: dict[str, tuple[str, ...]] = {
    "accounts": ("/api/v1/customers", "/api/v1/accounts", "/api/v1/fx-rates", "/api/v1/merchants"),
    "transactions": ("/api/v1/payments",),
    "partners": ("/api/v1/partners",),
    "cashback": ("/api/v1/cashback",),
}
# ``/_/<service>/<probe>`` reaches one service's own endpoint through the ingress.
PROBES = ("healthz", "readyz", "metrics", "docs", "openapi.json")
# A short pool-purge-delay lets ``del server`` succeed soon after idle keep-alive connections close.
# maxconn: at most this many requests at once per instance, the rest wait in HAProxy's queue (cheap, in C,
# and served by whichever instance frees a slot first). Without it 1000 users put 1000 requests into one
# event loop, its /healthz answered after seconds, and HAProxy took a merely busy instance out: the
# benchmark's single instance answered "503 no server available" to 12% of requests.
SERVER_MAXCONN = 48
# One thread: the ingress carries ~550 requests/s at the benchmark's load, a small part of one, and on two
# cores shared with the whole platform a second thread only added wake-ups and locking of the servers'
# queues. Alternated (1 instance, 1000 users, think time 0.8-2.4 s, 3 pairs): HAProxy used 0.053-0.054
# cores against 0.075-0.112 with two threads (0.09-0.10 ms per request against 0.14-0.25, the most when
# requests queued).
THREADS = 1
# Every request is logged with its timers (queue, server, total) only while the access log is switched on
# through the runtime API (``set_access_log``): the load test does it for its measured window. Otherwise
# only what went wrong is: a response HAProxy made itself (503 after the queue timeout, no route) or a 5xx,
# and any request that got no response. At ~600 requests/s a log of every one would grow ~10 GB a day.
ACCESS_LOG_KEY = "access_log"
SERVER_CHECK = (
    f"check inter 1s fastinter 500ms downinter 1s fall 2 rise 1 pool-purge-delay 200ms maxconn {SERVER_MAXCONN}"
)


def _acl(prefixes: tuple[str, ...]) -> str:
    """Match the prefix itself or anything below it, never ``/api/v1/accountsXYZ``."""
    exact = " ".join(prefixes)
    below = " ".join(f"{p}/" for p in prefixes)
    return f"{{ path {exact} }} || {{ path_beg {below} }}"


def render_config(
    port: int,
    socket_path: Path,
    servers: dict[str, list[tuple[str, int]]],
    stats_port: int | None = None,
    slots: dict[str, list[tuple[str, int]]] | None = None,
    access_log_map: Path | None = None,
) -> str:
    """The whole haproxy.cfg; ``servers`` maps a service to its running (name, port) instances,
    ``slots`` to every (name, port) one may take; those not running are declared ``disabled``.
    ``access_log_map`` is the map file whose ``access_log`` entry switches the access log on."""
    services_re = "|".join(SERVICES)
    probes_re = "|".join(p.replace(".", r"\.") for p in PROBES)
    lines = [
        "global",
        "    maxconn 4096",
        f"    nbthread {THREADS}",
        f"    stats socket {socket_path} mode 600 level admin",
        "    stats timeout 30s",
        "    log stdout format raw local0 info",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout queue 10s",
        "    # A killed instance refuses connections at once (out after fall 2 × inter 1 s); a busy one gets 3 s.",
        "    timeout check 3s",
        "    # Payments are idempotent by key, so a request that never reached an instance (or got",
        "    # nothing back) may go to another one; a response timeout is never retried.",
        "    option redispatch 1",
        "    retries 2",
        "    retry-on conn-failure empty-response",
        "    option forwardfor",
        f"    default-server {SERVER_CHECK}",
        "",
        "frontend ingress",
        f"    bind 127.0.0.1:{port}",
        f"    acl probe path_reg ^/_/({services_re})/({probes_re})$",
        "    http-request set-var(txn.service) path,field(3,/) if probe",
        r"    http-request replace-path ^/_/[^/]+(/.*)$ \1 if probe",
    ]
    if access_log_map is not None:
        # ``http-response`` rules see the servers' responses only, so HAProxy's own are always logged.
        lines.append(
            "    http-response set-log-level silent if { status lt 500 } "
            f"!{{ str({ACCESS_LOG_KEY}),map({access_log_map},off) -m str on }}"
        )
    else:
        lines.append("    option dontlog-normal")
    lines.append("    use_backend %[var(txn.service)] if { var(txn.service) -m found }")
    for service, prefixes in ROUTES.items():
        lines.append(f"    use_backend {service} if {_acl(prefixes)}")
    lines += [
        "    default_backend no_route",
        "",
        "backend no_route",
        "    http-request return status 404 content-type application/problem+json "
        'string \'{"type":"not-found","title":"Not Found","status":404,"detail":"no such route"}\'',
    ]
    for service in SERVICES:
        lines += [
            "",
            f"backend {service}",
            "    balance roundrobin",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
        ]
        running = servers.get(service, [])
        lines += [f"    server {name} 127.0.0.1:{srv_port}" for name, srv_port in running]
        taken = {name for name, _ in running}
        lines += [
            f"    server {name} 127.0.0.1:{srv_port} disabled"
            for name, srv_port in (slots or {}).get(service, [])
            if name not in taken
        ]
    if stats_port:
        lines += [
            "",
            "frontend stats",
            f"    bind 127.0.0.1:{stats_port}",
            "    option dontlog-normal",
            "    stats enable",
            "    stats uri /stats",
            "    stats refresh 2s",
        ]
    return "\n".join(lines) + "\n"


class RuntimeApiError(RuntimeError):
    pass


@dataclass
class HAProxy:
    """The ingress process and its runtime API."""

    root: Path
    port: int
    stats_port: int | None = None
    servers: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # Every (name, port) an instance of a service may have: declared in the config, parked when unused.
    slots: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    last_removal: tuple[float, float] = (0.0, 0.0)  # seconds to drain, seconds until deleted

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.root / "admin.sock"

    @property
    def config_file(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def access_log_map(self) -> Path:
        return self.root.resolve() / "access-log.map"

    @property
    def log_file(self) -> Path:
        return self.root / "haproxy.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    # ---------------------------------------------------------------- lifecycle
    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.access_log_map.write_text(f"{ACCESS_LOG_KEY} off\n")  # a (re)start begins with it off
        self.config_file.write_text(
            render_config(self.port, self.socket_path, self.servers, self.stats_port, self.slots, self.access_log_map)
        )

    def start(self, timeout_s: float = 15) -> None:
        if self.pid:
            return
        self.write_config()
        check = procs.spawn([HAPROXY_BIN, "-c", "-q", "-f", str(self.config_file)], self.log_file)
        if check.wait(timeout=30) != 0:
            raise procs.StartupError("haproxy", "invalid configuration", self.log_file)
        self.socket_path.unlink(missing_ok=True)
        proc = procs.spawn([HAPROXY_BIN, "-db", "-f", str(self.config_file)], self.log_file)
        procs.write_pid(self.pid_file, proc.pid)
        procs.wait_until(
            lambda: procs.port_open(self.port) and self.socket_path.exists(),
            timeout_s=timeout_s,
            component="haproxy",
            log_file=self.log_file,
            alive=lambda: procs.pid_alive(proc.pid),
        )

    def stop(self) -> None:
        procs.stop_pid(procs.read_pid(self.pid_file), timeout_s=10)
        self.pid_file.unlink(missing_ok=True)

    # ---------------------------------------------------------------- runtime API
    def runtime(self, command: str, timeout_s: float = 5) -> str:
        """Send one command to the runtime API and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def set_access_log(self, on: bool) -> bool:
        """Log every request from now on (or again only what went wrong). False when the running
        HAProxy cannot: it was started by a version without the switch."""
        answer = self.runtime(f"set map {self.access_log_map} {ACCESS_LOG_KEY} {'on' if on else 'off'}")
        return answer.strip() == ""

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as rows (one per frontend, backend and server)."""
        text = self.runtime("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server_states(self, backend: str) -> dict[str, dict[str, str]]:
        """Per server in the backend: ``status`` (UP/DOWN/DRAIN...), ``scur`` (current sessions),
        ``qcur``. A parked slot (maintenance) is no server of the backend and is left out."""
        return {
            row["svname"]: row
            for row in self.stats()
            if row["pxname"] == backend
            and row["svname"] not in ("FRONTEND", "BACKEND")
            and not row["status"].startswith("MAINT")
        }

    def _is_slot(self, backend: str, name: str) -> bool:
        return any(slot == name for slot, _ in self.slots.get(backend, []))

    def _declared_in_config(self, name: str) -> bool:
        """Declared when HAProxy started (a server ``add``-ed at run time must be ``del``-eted)."""
        try:
            return f" {name} 127.0.0.1:" in self.config_file.read_text()
        except OSError:
            return False

    def _declared(self, backend: str, name: str) -> bool:
        """In the running config, parked or not (an HAProxy started by an older config may lack it)."""
        return any(row["pxname"] == backend and row["svname"] == name for row in self.stats())

    def add_server(self, backend: str, name: str, port: int, *, wait_up_s: float = 20) -> None:
        """Register an instance live; returns once HAProxy's health check says it is UP.

        A server of that name left behind with another address (a crashed test, a reused name) is
        replaced, never silently kept pointing at a port that may now belong to someone else.
        """
        existing = self.server_states(backend).get(name)
        if existing is not None and existing.get("addr") != f"127.0.0.1:{port}":
            self.remove_server(backend, name, drain_timeout_s=2)
            existing = None
        if existing is None:
            if self._is_slot(backend, name) and self._declared(backend, name):
                self.runtime(f"set server {backend}/{name} addr 127.0.0.1 port {port}")
            else:
                out = self.runtime(f"add server {backend}/{name} 127.0.0.1:{port} {SERVER_CHECK}")
                if "New server registered" not in out:
                    raise RuntimeApiError(f"add server {backend}/{name}: {out.strip()}")
        self.runtime(f"enable server {backend}/{name}")
        self.runtime(f"enable health {backend}/{name}")
        if wait_up_s:
            procs.wait_until(
                lambda: self.server_states(backend).get(name, {}).get("status", "").startswith("UP"),
                timeout_s=wait_up_s,
                interval_s=0.2,
                component=f"haproxy server {backend}/{name}",
                log_file=self.log_file,
            )

    def remove_server(self, backend: str, name: str, *, drain_timeout_s: float = 30) -> None:
        """Drain, wait for the sessions to finish, disable, delete (the process may stop afterwards)."""
        if name not in self.server_states(backend):
            return
        t0 = time.monotonic()
        self.runtime(f"set server {backend}/{name} state drain")
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            row = self.server_states(backend).get(name)
            if row is None or (int(row["scur"] or 0) == 0 and int(row["qcur"] or 0) == 0):
                break
            time.sleep(0.1)
        drained = time.monotonic()
        self.runtime(f"disable server {backend}/{name}")
        if self._is_slot(backend, name) and self._declared_in_config(name):  # parked for the next one
            self.last_removal = (drained - t0, time.monotonic() - t0)
            return
        out = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = self.runtime(f"del server {backend}/{name}")
            if "Server deleted" in out or "No such server" in out:
                self.last_removal = (drained - t0, time.monotonic() - t0)
                return
            time.sleep(0.2)
        raise RuntimeApiError(f"del server {backend}/{name}: {out.strip()}")
