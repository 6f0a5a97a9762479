"""One etcd member (Debian's ``etcd`` binary) as Patroni's distributed configuration store."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from newbank.runtime import procs

ETCD_BIN = "/usr/bin/etcd"


@dataclass
class Etcd:
    """A single-member etcd cluster on 127.0.0.1, data under ``root``."""

    root: Path
    client_port: int
    peer_port: int
    name: str = "newbank-etcd"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "etcd.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "etcd.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def start(self, timeout_s: float = 30) -> None:
        if self.pid and self.healthy():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            ETCD_BIN,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"newbank-{self.client_port}",
            "--enable-v2=true",
            "--log-level", "warn",
            "--logger", "zap",
        ]  # fmt: skip
        proc = procs.spawn(argv, self.log_file, env={"PATH": "/usr/bin:/bin"})
        procs.write_pid(self.pid_file, proc.pid)
        procs.wait_until(
            self.healthy,
            timeout_s=timeout_s,
            component="etcd",
            log_file=self.log_file,
            alive=lambda: procs.pid_alive(proc.pid),
        )

    def stop(self) -> None:
        procs.stop_pid(procs.read_pid(self.pid_file))
        self.pid_file.unlink(missing_ok=True)
