"""The local runtime: real PostgreSQL (Patroni) + etcd, RabbitMQ, HAProxy and the services as processes.

Reusable from tests: ``start_pg_cluster``, ``RabbitMQ``, ``HAProxy``; everything is stopped by PID.
"""

from __future__ import annotations

from pathlib import Path

from newbank.runtime.etcd import Etcd
from newbank.runtime.haproxy import HAProxy
from newbank.runtime.patroni_cluster import PatroniNode, PgCluster
from newbank.runtime.procs import StartupError, free_port, free_ports, stop_pid
from newbank.runtime.rabbitmq import RabbitMQ

__all__ = [
    "Etcd",
    "HAProxy",
    "PatroniNode",
    "PgCluster",
    "RabbitMQ",
    "StartupError",
    "free_port",
    "free_ports",
    "start_pg_cluster",
    "stop_pg_cluster",
    "stop_pid",
]


def start_pg_cluster(root: Path, ports: list[int] | None = None, *, wait_sync: bool = True) -> PgCluster:
    """etcd + two Patroni nodes under ``root`` (6 ports: etcd client/peer, 2 × postgres, 2 × REST).

    On failure everything started so far is stopped before the error propagates.
    """
    ports = ports or free_ports(6)
    etcd = Etcd(root / "etcd", ports[0], ports[1])
    cluster = PgCluster(root / "pg", etcd.url, (ports[2], ports[3]), (ports[4], ports[5]), etcd=etcd)
    try:
        etcd.start()
        cluster.start()
        if wait_sync:
            cluster.wait_sync()
    except BaseException:
        stop_pg_cluster(cluster)
        raise
    return cluster


def stop_pg_cluster(cluster: PgCluster) -> None:
    """Stop both Patroni nodes (and their postmasters), then etcd — all by PID."""
    try:
        cluster.stop()
    finally:
        if cluster.etcd is not None:
            cluster.etcd.stop()
