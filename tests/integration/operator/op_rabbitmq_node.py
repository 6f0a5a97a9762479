"""A throw-away RabbitMQ node (Debian's rabbitmq-server) on free 127.0.0.1 ports, stopped by PID.

Used until the shared ``rabbitmq`` fixture of tests/conftest.py exists; same surface
(``amqp_url``, ``management_url``, ``user``/``password``, ``stop()``/``start()``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """None when a node can be started here, else why not (the tests skip with it)."""
    if not SERVER.exists():
        return f"{SERVER} not installed (Debian package rabbitmq-server)"
    if os.geteuid() != 0:
        return "rabbitmq-server from Debian must be started as root here"
    return None


class RabbitMQNode:
    user = "newbank"
    password = "newbank-test"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp_port, self.management_port, self.dist_port, self.epmd_port = (free_port() for _ in range(4))
        self.nodename = f"newbank-op-{self.amqp_port}@localhost"
        self.pid: int | None = None
        self.log_dir = base / "log"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def _env(self) -> dict[str, str]:
        home = self.base / "home"
        config = self.base / "rabbitmq.conf"
        plugins = self.base / "enabled_plugins"
        for folder in (home, self.log_dir, self.base / "mnesia"):
            folder.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            "loopback_users = none\n"
            f"default_user = {self.user}\ndefault_pass = {self.password}\n"
            "management.rates_mode = basic\ncollect_statistics_interval = 1000\n"
        )
        plugins.write_text("[rabbitmq_management].\n")
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_CONFIG_FILE=str(config),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(plugins),
            RABBITMQ_PID_FILE=str(self.base / "rabbit.pid"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(self.epmd_port),
        )
        return env

    def start(self, timeout_s: float = 90.0) -> None:
        env = self._env()
        subprocess.run([str(SERVER), "-detached"], env=env, check=True, capture_output=True)
        deadline = time.monotonic() + timeout_s
        pid_file = self.base / "rabbit.pid"
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                self.pid = int(pid_file.read_text().strip())
                break
            time.sleep(0.2)
        subprocess.run(
            [str(CTL), "-n", self.nodename, "await_startup", "--timeout", str(int(timeout_s))],
            env=env,
            check=True,
            capture_output=True,
            timeout=timeout_s + 10,
        )
        if self.pid is None:
            raise RuntimeError(f"RabbitMQ wrote no PID; see {self.log_dir}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.management_url + "/api/overview", auth=(self.user, self.password)).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"RabbitMQ management API did not come up; see {self.log_dir}")

    def stop(self) -> None:
        """Stop the node by PID (and its epmd, which runs on a port of ours)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(150):
                    os.kill(self.pid, 0)
                    time.sleep(0.2)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        (self.base / "rabbit.pid").unlink(missing_ok=True)

    def kill_epmd(self) -> None:
        """The node starts epmd as a daemon on our private port: find it by its environment."""
        marker = f"ERL_EPMD_PORT={self.epmd_port}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (proc / "comm").read_text().strip() == "epmd" and marker in (proc / "environ").read_bytes().split(
                    b"\0"
                ):
                    os.kill(int(proc.name), signal.SIGTERM)
            except (OSError, ProcessLookupError):
                continue

    def cleanup(self) -> None:
        self.stop()
        self.kill_epmd()
        shutil.rmtree(self.base, ignore_errors=True)
