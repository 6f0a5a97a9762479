"""RabbitMQ 3.10 (Debian's package) started detached, without systemd, bound to 127.0.0.1.

The server gets its own HOME (holding the Erlang cookie that ``rabbitmqctl`` must share), node name,
data and log folders, and its own ``epmd`` on 127.0.0.1 which we start ourselves so we hold its PID.
The service user is created by ``default_user`` on first boot of an empty node.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from newbank.runtime import procs

RABBIT_SBIN = Path("/usr/lib/rabbitmq/bin")
EPMD_BIN = "/usr/bin/epmd"


def system_epmd_in_use() -> bool:
    """True when some Erlang node is registered with the epmd on port 4369 (someone relies on it)."""
    try:
        out = subprocess.run(
            [EPMD_BIN, "-names"],
            env={"PATH": "/usr/bin:/bin", "ERL_EPMD_PORT": "4369"},
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.startswith("name ") for line in out.splitlines())


def stop_foreign_epmd() -> list[int]:
    """Stop the epmd the package leaves on every address at the default port 4369, by PID.

    Only an epmd with no ``-address``/``-port`` and no ERL_EPMD_ADDRESS/ERL_EPMD_PORT (other than 4369)
    qualifies, and only while no node is registered with it; ours, started with
    ``-address 127.0.0.1 -port N``, and an epmd some other broker relies on are left alone.
    """
    stopped: list[int] = []
    if system_epmd_in_use():
        return stopped
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
            env = dict(line.split(b"=", 1) for line in (proc_dir / "environ").read_bytes().split(b"\0") if b"=" in line)
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"epmd") or b"-address" in argv or b"-port" in argv:
            continue
        if b"ERL_EPMD_ADDRESS" in env or env.get(b"ERL_EPMD_PORT", b"4369") != b"4369":
            continue
        procs.stop_pid(int(proc_dir.name), timeout_s=5)
        stopped.append(int(proc_dir.name))
    return stopped


# One Erlang scheduler (``+S 1:1``): the broker needs ~0.1 core at the benchmark's load, and on two cores
# shared with the whole platform a second scheduler only added wake-ups and migrations. Alternated (1
# instance, 1000 users, think time 0.8-2.4 s, 3 pairs, a platform restart each): RabbitMQ used
# 0.103-0.115 cores against 0.133-0.142 with two (0.28-0.30 ms per payment against 0.37-0.38).
SCHEDULERS = "+S 1:1"


@dataclass
class RabbitMQ:
    """One RabbitMQ node with the management plugin, data under ``root``."""

    root: Path
    amqp_port: int
    management_port: int
    dist_port: int
    epmd_port: int
    user: str = "newbank"
    password: str = ""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        secret = self.root / "password"
        if not self.password:
            if secret.exists():
                self.password = secret.read_text().strip()
            else:
                self.password = os.urandom(18).hex()
                secret.touch(mode=0o600)
                secret.write_text(self.password)

    # ---------------------------------------------------------------- addresses
    @property
    def nodename(self) -> str:
        return f"newbank{self.amqp_port}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def credentials(self) -> tuple[str, str]:
        return (self.user, self.password)

    @property
    def log_file(self) -> Path:
        return self.root / "log" / f"{self.nodename}.log"

    @property
    def start_log(self) -> Path:
        return self.root / "rabbitmq-start.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "rabbitmq.pid"

    @property
    def epmd_pid_file(self) -> Path:
        return self.root / "epmd.pid"

    @property
    def pid(self) -> int | None:
        """The Erlang VM's PID (beam.smp)."""
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    @property
    def epmd_pid(self) -> int | None:
        pid = procs.read_pid(self.epmd_pid_file)
        return pid if procs.pid_alive(pid) else None

    # ---------------------------------------------------------------- environment
    def env(self) -> dict[str, str]:
        ip = "{127,0,0,1}"
        return {
            "PATH": f"{RABBIT_SBIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {ip} {SCHEDULERS}",
            "RABBITMQ_CTL_ERL_ARGS": f"-kernel inet_dist_use_interface {ip}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def _write_config(self) -> None:
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {self.management_port}",
                    f"default_user = {self.user}",
                    f"default_pass = {self.password}",
                    "default_user_tags.administrator = true",
                    "default_permissions.configure = .*",
                    "default_permissions.read = .*",
                    "default_permissions.write = .*",
                    "loopback_users = none",
                    "log.console = false",
                    "log.file.level = info",
                    "vm_memory_high_watermark.absolute = 512MB",
                    "disk_free_limit.absolute = 50MB",
                    "",
                ]
            )
        )
        (self.root / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        os.chmod(self.root / "rabbitmq.conf", 0o600)

    def ctl(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl`` against this node (same HOME, so the same cookie)."""
        return subprocess.run(
            [str(RABBIT_SBIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    # ---------------------------------------------------------------- lifecycle
    def _start_epmd(self, stop_system_epmd: bool) -> None:
        if self.epmd_pid:
            return
        if stop_system_epmd:
            stop_foreign_epmd()
        proc = procs.spawn(
            [EPMD_BIN, "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            self.root / "epmd.log",
            env={"PATH": "/usr/bin:/bin", "ERL_EPMD_ADDRESS": "127.0.0.1"},
        )
        procs.write_pid(self.epmd_pid_file, proc.pid)
        procs.wait_until(
            lambda: procs.port_open(self.epmd_port), timeout_s=10, component="epmd", log_file=self.root / "epmd.log"
        )

    def ready(self) -> bool:
        try:
            req = urllib.request.Request(f"{self.management_url}/api/overview")
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status == 200 and procs.port_open(self.amqp_port)
        except OSError:
            return False

    def start(self, *, empty: bool = False, stop_system_epmd: bool = False, timeout_s: float = 90) -> None:
        """Start the node detached and wait until AMQP and the management API answer.

        ``empty=True`` wipes the node's data first: no queues, no messages, only the service user.
        ``stop_system_epmd`` stops the all-addresses epmd the package leaves behind (``newbank up``
        does; test fixtures do not, as other brokers on this machine may rely on it).
        """
        if self.pid and self.ready():
            return
        if empty:
            shutil.rmtree(self.root / "mnesia", ignore_errors=True)
        self._write_config()
        self._start_epmd(stop_system_epmd)
        proc = procs.spawn([str(RABBIT_SBIN / "rabbitmq-server"), "-detached"], self.start_log, env=self.env())
        proc.wait(timeout=60)
        procs.wait_until(
            lambda: self.ctl("await_startup", "--timeout", "5", timeout_s=15).returncode == 0,
            timeout_s=timeout_s,
            interval_s=0.5,
            component="rabbitmq",
            log_file=self.log_file,
        )
        procs.wait_until(self.ready, timeout_s=30, component="rabbitmq management", log_file=self.log_file)

    def stop(self, *, keep_epmd: bool = True) -> None:
        """Stop the node by PID (SIGTERM is a clean shutdown for RabbitMQ 3.10)."""
        procs.stop_pid(procs.read_pid(self.pid_file), timeout_s=30)
        if not keep_epmd:
            procs.stop_pid(procs.read_pid(self.epmd_pid_file), timeout_s=5)
            self.epmd_pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Crash the broker (SIGKILL of the Erlang VM) for chaos tests."""
        procs.kill_pid(self.pid)

    def queue_depths(self) -> dict[str, int]:
        """Messages per queue from the management API (quorum queues included)."""
        req = urllib.request.Request(f"{self.management_url}/api/queues")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return {q["name"]: int(q.get("messages", 0)) for q in json.loads(resp.read())}
