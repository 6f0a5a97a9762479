"""Where a copy of the platform lives: its state folder, its ports, and the component objects.

``newbank up`` fixes the layout in ``<home>/runtime.json``; every later command (status, scale, down,
the controller) reads it back, so they act on the same ports even from a shell with other variables.
Ports: ``NEWBANK_PORT`` (ingress, 8080), ``NEWBANK_PORT_BASE`` (8100) + the offsets below, each also
settable on its own as ``NEWBANK_PORT_<NAME>`` (e.g. ``NEWBANK_PORT_AMQP``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from newbank.runtime.etcd import Etcd
from newbank.runtime.haproxy import HAProxy
from newbank.runtime.patroni_cluster import PgCluster
from newbank.runtime.procs import repo_root
from newbank.runtime.rabbitmq import RabbitMQ

PORT_OFFSETS: dict[str, int] = {
    "accounts": 1,
    "partners": 2,
    "cashback": 3,
    "transactions": 10,  # 10..29: one port per transaction-service slot
    "etcd_client": 40,
    "etcd_peer": 41,
    "pg0": 42,
    "pg1": 43,
    "patroni0": 44,
    "patroni1": 45,
    "amqp": 50,
    "rabbit_management": 51,
    "rabbit_dist": 52,
    "epmd": 53,
    "haproxy_stats": 60,
}
MAX_INSTANCES = {"accounts": 1, "partners": 1, "cashback": 1, "transactions": 20}
DEFAULT_REPLICAS = {"accounts": 1, "transactions": 2, "partners": 1, "cashback": 1}
SERVICES = tuple(DEFAULT_REPLICAS)
DATABASE_OF = {"accounts": "bank", "transactions": "bank", "partners": "cashback", "cashback": "cashback"}


def instance_name(service: str, slot: int) -> str:
    return f"{service}-{slot}"


def default_home() -> Path:
    return Path(os.environ.get("NEWBANK_HOME") or repo_root() / ".newbank").resolve()


@dataclass
class Layout:
    home: Path
    ingress_port: int
    ports: dict[str, int]
    app_module: str = "newbank.{service}.main:app"
    app_dir: str = ""
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- persistence
    @property
    def file(self) -> Path:
        return self.home / "runtime.json"

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["home"] = str(self.home)
        self.file.write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, home: Path) -> Layout | None:
        try:
            data = json.loads((home / "runtime.json").read_text())
        except (OSError, ValueError):
            return None
        data["home"] = Path(data["home"])
        return cls(**data)

    @classmethod
    def from_env(cls, home: Path | None = None) -> Layout:
        """The saved layout of ``home`` if there is one, else one made from the environment."""
        home = home or default_home()
        saved = cls.load(home)
        if saved is not None:
            return saved
        base = int(os.environ.get("NEWBANK_PORT_BASE", "8100"))
        ports = {
            name: int(os.environ.get(f"NEWBANK_PORT_{name.upper()}", base + offset))
            for name, offset in PORT_OFFSETS.items()
        }
        return cls(
            home=home,
            ingress_port=int(os.environ.get("NEWBANK_PORT", "8080")),
            ports=ports,
            app_module=os.environ.get("NEWBANK_APP_MODULE", "newbank.{service}.main:app"),
            app_dir=os.environ.get("NEWBANK_APP_DIR", ""),
            log_level=os.environ.get("NEWBANK_LOG_LEVEL", "INFO"),
        )

    # ---------------------------------------------------------------- folders
    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def admin_token_file(self) -> Path:
        return self.home / "admin-token"

    @property
    def controller_pid_file(self) -> Path:
        return self.home / "controller.pid"

    @property
    def controller_log(self) -> Path:
        return self.logs / "controller.log"

    @property
    def desired_file(self) -> Path:
        return self.home / "desired.json"

    @property
    def instances_file(self) -> Path:
        return self.home / "instances.json"

    # ---------------------------------------------------------------- components
    def instance_port(self, service: str, slot: int) -> int:
        return self.ports[service] + slot - 1

    def etcd(self) -> Etcd:
        return Etcd(self.home / "etcd", self.ports["etcd_client"], self.ports["etcd_peer"])

    def pg_cluster(self) -> PgCluster:
        etcd = self.etcd()
        return PgCluster(
            self.home / "postgres",
            etcd.url,
            (self.ports["pg0"], self.ports["pg1"]),
            (self.ports["patroni0"], self.ports["patroni1"]),
            etcd=etcd,
        )

    def rabbitmq(self) -> RabbitMQ:
        return RabbitMQ(
            self.home / "rabbitmq",
            self.ports["amqp"],
            self.ports["rabbit_management"],
            self.ports["rabbit_dist"],
            self.ports["epmd"],
        )

    def instance_slots(self) -> dict[str, list[tuple[str, int]]]:
        """Every (name, port) an instance of each service may have."""
        return {
            service: [(instance_name(service, slot), self.instance_port(service, slot)) for slot in range(1, most + 1)]
            for service, most in MAX_INSTANCES.items()
        }

    def haproxy(self, servers: dict[str, list[tuple[str, int]]] | None = None) -> HAProxy:
        return HAProxy(
            self.home / "haproxy",
            self.ingress_port,
            self.ports["haproxy_stats"],
            servers or {},
            slots=self.instance_slots(),
        )

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"
