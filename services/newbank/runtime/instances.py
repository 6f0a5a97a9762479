"""Service instances as uvicorn processes: their environment, cgroup, log file and readiness."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from newbank.runtime import cgroups, procs
from newbank.runtime.jsonlog import uvicorn_log_config
from newbank.runtime.layout import DATABASE_OF, Layout, instance_name
from newbank.settings import Settings


@dataclass
class Instance:
    """One running (or wanted) instance of a service."""

    service: str
    slot: int
    port: int
    pid: int = 0
    limited: bool = False  # started inside its cgroups
    registered: bool = False  # a server in HAProxy
    restarts: int = 0  # in total, for the status table
    failures: int = 0  # exits since it was last ready; drives the back-off and `up`'s verdict
    started_at: float = 0.0

    @property
    def name(self) -> str:
        return instance_name(self.service, self.slot)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return procs.pid_alive(self.pid)

    def probe(self, path: str = "/readyz", timeout_s: float = 1.5) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False


def load_instances(layout: Layout) -> list[Instance]:
    try:
        return [Instance(**row) for row in json.loads(layout.instances_file.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def save_instances(layout: Layout, instances: list[Instance]) -> None:
    """Atomic write, so a reader (``newbank status``) never sees half a file."""
    tmp = layout.instances_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(i) for i in instances], indent=1))
    tmp.replace(layout.instances_file)


def admin_token(layout: Layout) -> str:
    return os.environ.get("NEWBANK_ADMIN_TOKEN") or layout.admin_token_file.read_text().strip()


def tuning_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The service settings given to ``newbank up`` (``NEWBANK_CONSUMER_PREFETCH=256 newbank up``):
    any ``NEWBANK_*`` variable that names a field of newbank.settings.Settings. Where the platform
    is (URLs, credentials, identity) is the runtime's own and overrides these."""
    fields = {f"NEWBANK_{name.upper()}" for name in Settings.model_fields}
    return {key: value for key, value in environ.items() if key in fields}


def service_env(layout: Layout, service: str, instance_id: str) -> dict[str, str]:
    """The ``NEWBANK_*`` settings of one instance (see newbank/settings.py)."""
    cluster = layout.pg_cluster()
    rabbit = layout.rabbitmq()
    db = DATABASE_OF[service]
    env = tuning_from_environment(os.environ)
    env |= {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(layout.home),
        "PYTHONUNBUFFERED": "1",
        "NEWBANK_SERVICE": service,
        "NEWBANK_INSTANCE_ID": instance_id,
        "NEWBANK_DATABASE_URL": cluster.multi_host_dsn(db),
        "NEWBANK_DATABASE_REPLICA_URL": cluster.replica_multi_host_dsn(db),
        "NEWBANK_AMQP_URL": rabbit.amqp_url,
        "NEWBANK_ADMIN_TOKEN": admin_token(layout),
        "NEWBANK_ACCOUNTS_INTERNAL_URL": f"http://127.0.0.1:{layout.instance_port('accounts', 1)}",
        "NEWBANK_LOG_LEVEL": layout.log_level,
    }
    env.update(layout.extra_env)
    return env


def log_file(layout: Layout, instance: Instance) -> Path:
    return layout.logs / f"{instance.name}.log"


# No access log (HAProxy logs requests when asked; a line per request costs the instance's CPU) and
# a bounded graceful shutdown. The Helm chart runs the services with the same (tests/k8s).
UVICORN_FLAGS = ("--no-access-log", "--timeout-graceful-shutdown", "10")


def start_instance(layout: Layout, instance: Instance, *, use_cgroups: bool) -> Instance:
    """Start uvicorn for ``instance`` (in its cgroups when possible); does not wait for readiness."""
    module = layout.app_module.format(service=instance.service)
    argv = [
        sys.executable, "-m", "uvicorn", module,
        "--host", "127.0.0.1",
        "--port", str(instance.port),
        *UVICORN_FLAGS,
        "--log-config", str(uvicorn_log_config(layout.home)),
    ]  # fmt: skip
    if layout.app_dir:
        argv += ["--app-dir", layout.app_dir]
    instance.limited = False
    if use_cgroups:
        files = cgroups.prepare(layout.home, instance.name, cgroups.LIMITS[instance.service])
        argv = cgroups.join_and_exec(files, argv)
        instance.limited = True
    proc = procs.spawn(
        argv, log_file(layout, instance), env=service_env(layout, instance.service, instance.name), cwd=layout.home
    )
    instance.pid = proc.pid
    instance.started_at = time.time()
    return instance


def stop_instance(layout: Layout, instance: Instance, *, timeout_s: float = 15) -> None:
    """SIGTERM (uvicorn finishes its requests), SIGKILL after ``timeout_s``; then drop its cgroups."""
    procs.stop_pid(instance.pid, timeout_s=timeout_s)
    cgroups.remove(layout.home, instance.name)
