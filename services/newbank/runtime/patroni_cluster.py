"""PostgreSQL 15 primary + streaming replica managed by Patroni 4 (etcd3 as the DCS).

PostgreSQL refuses to run as root, so Patroni and its postmaster run as the ``postgres`` system user
from this repository's virtual environment (made with /usr/bin/python3, which that user can read).
Synchronous replication is on but not strict: when the replica is gone the primary keeps taking writes.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from newbank.runtime import procs
from newbank.runtime.etcd import Etcd
from newbank.runtime.patroni_node import PatroniNode
from newbank.runtime.reaper import children_of

REAPER = Path(__file__).with_name("reaper.py")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
DATABASES = ("bank", "cashback")
__all__ = ["DATABASES", "PG_BIN", "PG_USER", "PatroniNode", "PgCluster", "patroni_executable"]
# After a crash of the primary's postmaster, commits wait (synchronous replication) until the standby
# reconnects: let it retry every 0.5 s instead of 5 s, and keep crash recovery short with frequent
# checkpoints.
FAST_RECOVERY = {"wal_retrieve_retry_interval": "500ms", "checkpoint_timeout": "60s"}
# Those 60 s checkpoints make full-page images most of the WAL (61 % with 8 M stored idempotency keys, whose
# random keys put every insert on a cold index leaf): lz4 cuts what the synchronous standby receives and the
# disk stores by 40 % (22 → 13 kB per payment), for no CPU we could measure. The Helm chart sets the same.
WAL = {"wal_compression": "lz4"}


def patroni_executable() -> str:
    """The ``patroni`` script next to the running interpreter (the repo's .venv)."""
    candidate = Path(sys.executable).parent / "patroni"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("patroni")
    if not found:
        raise procs.StartupError("postgresql", "patroni is not installed (pip install 'patroni[etcd3]')")
    return found


def check_postgres_can_run_patroni() -> None:
    """Fail early and clearly when the ``postgres`` user cannot read the virtual environment."""
    patroni = patroni_executable()
    result = subprocess.run(
        [patroni, "--version"], user=PG_USER, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise procs.StartupError(
            "postgresql",
            f"the '{PG_USER}' user cannot run {patroni} ({result.stderr.strip()[-200:]}); the repository and its "
            ".venv must be readable by it (not under /root) and the venv made with /usr/bin/python3",
        )


def _chown_to_postgres(path: Path) -> None:
    entry = pwd.getpwnam(PG_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class PgCluster:
    """Two Patroni nodes, one etcd, databases ``bank`` and ``cashback`` and a service login role."""

    root: Path
    etcd_url: str
    pg_ports: tuple[int, int]
    rest_ports: tuple[int, int]
    scope: str = "newbank"
    user: str = "newbank"
    password: str = ""
    superuser_password: str = ""
    replication_password: str = ""
    nodes: list[PatroniNode] = field(default_factory=list)
    # The DCS, when this object also owns it (``start_pg_cluster``); Patroni needs it to fail over.
    etcd: Etcd | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [
                PatroniNode(f"pg{i}", self.root / f"pg{i}", self.pg_ports[i], self.rest_ports[i]) for i in range(2)
            ]
        self._load_or_make_secrets()

    # ---------------------------------------------------------------- secrets and DSNs
    def _load_or_make_secrets(self) -> None:
        secrets_file = self.root / "secrets.json"
        if secrets_file.exists():
            data = json.loads(secrets_file.read_text())
        else:
            data = {k: os.urandom(18).hex() for k in ("password", "superuser", "replication", "rewind")}
            self.root.mkdir(parents=True, exist_ok=True)
            secrets_file.touch(mode=0o600)
            secrets_file.write_text(json.dumps(data))
        self.password = self.password or data["password"]
        self.superuser_password = data["superuser"]
        self.replication_password = data["replication"]
        self._rewind_password = data["rewind"]

    def _dsn(self, hosts: str, db: str, user: str, password: str, attrs: str | None) -> str:
        query = f"?target_session_attrs={attrs}" if attrs else ""
        return f"postgresql://{quote(user)}:{quote(password)}@{hosts}/{db}{query}"

    def multi_host_dsn(self, db: str = "bank", target_session_attrs: str = "read-write") -> str:
        """Whichever node is primary now (libpq/asyncpg multi-host)."""
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return self._dsn(hosts, db, self.user, self.password, target_session_attrs)

    def replica_multi_host_dsn(self, db: str = "bank") -> str:
        return self.multi_host_dsn(db, "prefer-standby")

    def primary_dsn(self, db: str = "bank") -> str:
        node = self.primary()
        return self._dsn(f"127.0.0.1:{node.pg_port}", db, self.user, self.password, None)

    def replica_dsn(self, db: str = "bank") -> str:
        node = self.replica()
        return self._dsn(f"127.0.0.1:{node.pg_port}", db, self.user, self.password, None)

    def superuser_dsn(self, db: str = "postgres", node: PatroniNode | None = None) -> str:
        node = node or self.primary()
        return self._dsn(f"127.0.0.1:{node.pg_port}", db, PG_USER, self.superuser_password, None)

    @property
    def rest_urls(self) -> list[str]:
        return [n.rest_url for n in self.nodes]

    # ---------------------------------------------------------------- who is who
    def node(self, name: str) -> PatroniNode:
        return next(n for n in self.nodes if n.name == name)

    def primary(self, timeout_s: float = 0) -> PatroniNode:
        """The node whose Patroni says it is the leader; waits up to ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            for node in self.nodes:
                if node.is_primary():
                    return node
            if time.monotonic() >= deadline:
                raise LookupError("no PostgreSQL primary right now")
            time.sleep(0.3)

    def replica(self, timeout_s: float = 0) -> PatroniNode:
        """A running streaming replica; waits up to ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            for node in self.nodes:
                # A member being promoted still answers /replica for a moment: it is not one.
                if node.is_replica() and not node.is_primary():
                    return node
            if time.monotonic() >= deadline:
                raise LookupError("no PostgreSQL replica right now")
            time.sleep(0.3)

    def roles(self) -> dict[str, str | None]:
        return {n.name: n.role() for n in self.nodes}

    # ---------------------------------------------------------------- lifecycle
    def _patroni_config(self, node: PatroniNode) -> dict[str, object]:
        parameters = {
            "unix_socket_directories": str(node.socket_dir),
            "max_connections": 300,
            "shared_buffers": "64MB",
            "wal_level": "replica",
            "hot_standby": "on",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "256MB",
            "wal_log_hints": "on",
            # After a crash PostgreSQL fsyncs every file of the data directory before recovery; file by
            # file that took ~2.4 s here and kept a crashed primary from taking writes for that long
            # (chaos 1a). syncfs() does the same guarantee in one call per filesystem.
            "recovery_init_sync_method": "syncfs",
            "log_destination": "stderr",
            "logging_collector": "off",
            **FAST_RECOVERY,
            **WAL,
        }
        auth = {
            "superuser": {"username": PG_USER, "password": self.superuser_password},
            "replication": {"username": "replicator", "password": self.replication_password},
            "rewind": {"username": "rewinder", "password": self._rewind_password},
        }
        return {
            "scope": self.scope,
            "namespace": "/newbank/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{node.rest_port}", "connect_address": f"127.0.0.1:{node.rest_port}"},
            "etcd3": {"hosts": [self.etcd_url.removeprefix("http://")]},
            "bootstrap": {
                "dcs": {
                    "ttl": 20,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": False,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(node.root / "pgpass"),
                "authentication": auth,
                "parameters": {"unix_socket_directories": str(node.socket_dir), **FAST_RECOVERY, **WAL},
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
                # A spread checkpoint would make the replica's base backup wait for minutes.
                "basebackup": [{"checkpoint": "fast"}],
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def _prepare_node(self, node: PatroniNode) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for folder in (node.root, node.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            _chown_to_postgres(folder)
        os.chmod(node.root, 0o700)
        node.config_file.write_text(json.dumps(self._patroni_config(node), indent=1))
        os.chmod(node.config_file, 0o600)
        _chown_to_postgres(node.config_file)

    def start_node(self, node: PatroniNode) -> int:
        """Start Patroni for ``node`` (it bootstraps, follows or promotes by itself).

        Patroni runs as the child of a small subreaper (``reaper.py``) that reaps its orphaned postmaster
        the moment it dies and wakes Patroni's loop (a killed primary postmaster is restarted ~1.5 s
        sooner, see that module). The node's PID file holds Patroni's own PID, found as that child.
        """
        if node.patroni_pid:
            return node.patroni_pid
        for pid in node.reaper_pids_recorded:  # earlier ones this process started are its zombies once exited
            procs.reap(pid)
        earlier = node.reaper_pids  # still holding a postmaster a killed Patroni left behind
        self._prepare_node(node)
        env = {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "HOME": str(node.root),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, str(REAPER), "--wake", node.rest_url, "--", patroni_executable(), str(node.config_file)]
        proc = procs.spawn(argv, node.log_file, env=env, cwd=node.root, user=PG_USER)
        node.reaper_pid_file.write_text("".join(f"{pid}\n" for pid in [proc.pid, *earlier]))
        deadline = time.monotonic() + 15
        while not (children := children_of(proc.pid)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise procs.StartupError(f"patroni {node.name}", "its reaper did not start it", node.log_file)
            time.sleep(0.01)
        procs.write_pid(node.pid_file, children[0])
        return children[0]

    def start(self, timeout_s: float = 120) -> None:
        """Start both nodes, wait for a primary and a streaming replica, create roles and databases.

        Both members start at once: on a first start one wins the race to initialise and the other
        copies it; on a restart only Patroni knows which may lead (after a failover, the last
        synchronous standby), and it needs both members to decide.
        """
        check_postgres_can_run_patroni()
        for node in self.nodes:
            self.start_node(node)
        procs.wait_until(
            lambda: any(n.is_primary() for n in self.nodes),
            timeout_s=timeout_s,
            component="postgresql primary (patroni)",
            log_file=self.nodes[0].log_file,
            alive=lambda: any(n.patroni_pid for n in self.nodes),
        )
        self.ensure_databases()
        other = next(n for n in self.nodes if not n.is_primary())
        procs.wait_until(
            lambda: self.replica() is not None,
            timeout_s=timeout_s,
            component=f"postgresql {other.name} (patroni replica)",
            log_file=other.log_file,
            alive=lambda: bool(other.patroni_pid),
        )

    def wait_sync(self, timeout_s: float = 30) -> None:
        """Wait until a synchronous standby is in place (acknowledged commits survive a failover)."""
        procs.wait_until(
            lambda: any(n.is_sync_standby() for n in self.nodes),
            timeout_s=timeout_s,
            component="postgresql synchronous standby",
            log_file=self.nodes[1].log_file,
        )

    def ensure_databases(self) -> None:
        """Create the service role and the two databases (idempotent)."""
        import psycopg2  # imported here: only the runtime needs it

        conn = self._writable_primary_connection(psycopg2)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f'{verb} ROLE "{self.user}" LOGIN PASSWORD %s', (self.password,))
                for db in DATABASES:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if not cur.fetchone():
                        cur.execute(f'CREATE DATABASE "{db}" OWNER "{self.user}"')
        finally:
            conn.close()

    def _writable_primary_connection(self, psycopg2: Any, timeout_s: float = 60) -> Any:
        """A connection to the leader once it accepts writes.

        On a restart of an existing cluster Patroni's ``/primary`` answers 200 as soon as the node holds
        the leader key, a moment before its postgres has left recovery; an ``ALTER ROLE`` then failed
        with "read-only transaction" and ``newbank up`` with it (seen twice in a row here).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            conn = None
            try:
                conn = psycopg2.connect(self.superuser_dsn("postgres", self.primary(timeout_s=30)))
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    if not cur.fetchone()[0]:
                        return conn
            except psycopg2.OperationalError:
                if time.monotonic() >= deadline:
                    raise
            if conn is not None:
                conn.close()
            if time.monotonic() >= deadline:
                raise LookupError("the PostgreSQL leader did not leave recovery")
            time.sleep(0.3)

    def kill_node(self, node: PatroniNode) -> None:
        """Crash a whole member: Patroni and its postmaster, SIGKILL (chaos tests)."""
        postmaster = node.postmaster_pid
        procs.kill_pid(node.patroni_pid)
        procs.kill_pid(postmaster)

    def stop_node(self, node: PatroniNode) -> None:
        postmaster = node.postmaster_pid
        procs.stop_pid(procs.read_pid(node.pid_file), timeout_s=30)
        procs.stop_pid(postmaster, timeout_s=15)
        for reaper in node.reaper_pids:  # they exit once Patroni and the postmaster are gone; in case not
            procs.stop_pid(reaper, timeout_s=5)
        node.pid_file.unlink(missing_ok=True)
        node.reaper_pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the replica(s) first so the primary never sees a needless failover."""
        ordered = sorted(self.nodes, key=lambda n: n.is_primary())
        for node in ordered:
            self.stop_node(node)
