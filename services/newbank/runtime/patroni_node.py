"""One Patroni member as seen from outside: its REST API (role, leader, sync standby) and its PIDs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from newbank.runtime import procs


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def _http_json(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(url, timeout=1.5) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as err:
        return dict(json.loads(err.read() or b"{}"))


@dataclass
class PatroniNode:
    """One Patroni member: its REST API, its postmaster, its data directory."""

    name: str
    root: Path
    pg_port: int
    rest_port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def config_file(self) -> Path:
        return self.root / "patroni.yml"

    @property
    def log_file(self) -> Path:
        return self.root / "patroni.log"

    @property
    def pid_file(self) -> Path:
        # Kept outside the postgres-owned folder so root always controls it.
        return self.root.parent / f"{self.name}.patroni.pid"

    @property
    def reaper_pid_file(self) -> Path:
        """The PID of the subreaper Patroni runs under (``newbank.runtime.reaper``)."""
        return self.root.parent / f"{self.name}.reaper.pid"

    @property
    def reaper_pids_recorded(self) -> list[int]:
        """Every reaper PID in the file, alive or not."""
        try:
            words = self.reaper_pid_file.read_text().split()
        except OSError:
            return []
        return [int(w) for w in words if w.isdigit()]

    @property
    def reaper_pids(self) -> list[int]:
        """The live reapers of this node: the current one first, then earlier ones that still hold the
        postmaster an earlier (killed) Patroni left running."""
        return [pid for pid in self.reaper_pids_recorded if procs.pid_alive(pid)]

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def patroni_pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    @property
    def postmaster_pid(self) -> int | None:
        pid = procs.read_pid(self.data_dir / "postmaster.pid")
        return pid if procs.pid_alive(pid) else None

    def role(self) -> str | None:
        """``primary``, ``replica`` or None when Patroni does not answer."""
        try:
            info = _http_json(f"{self.rest_url}/patroni")
        except (OSError, ValueError):
            return None
        role = info.get("role")
        if role == "master":
            return "primary"
        return str(role) if role and info.get("state") == "running" else None

    def is_leader_running(self) -> bool:
        """Primary in Patroni's eyes and in PostgreSQL's (promotion finished)."""
        return self.role() == "primary" and self.is_primary()

    def is_primary(self) -> bool:
        return _http_status(f"{self.rest_url}/primary") == 200

    def is_replica(self) -> bool:
        return _http_status(f"{self.rest_url}/replica") == 200

    def is_sync_standby(self) -> bool:
        return _http_status(f"{self.rest_url}/sync") == 200
