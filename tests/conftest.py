"""Session fixtures: real PostgreSQL (Patroni primary + replica, etcd), RabbitMQ and HAProxy.

Each starts once per test session on free ports in a temporary folder and is stopped by PID at the
end — also when a test fails or the session is interrupted (finalizer + atexit). Nothing here uses
port 8080 or the ``.newbank`` state folder of a running ``newbank up``.

- ``pg_cluster`` → ``newbank.runtime.PgCluster``: ``multi_host_dsn(db)`` (target_session_attrs=read-write),
  ``replica_multi_host_dsn(db)``, ``primary_dsn(db)``, ``replica_dsn(db)``, ``superuser_dsn(db)``,
  ``rest_urls``, ``primary()``/``replica()`` → ``PatroniNode`` (``.name``, ``.patroni_pid``,
  ``.postmaster_pid``, ``.pg_port``, ``.rest_url``, ``.role()``), ``kill_node(node)``,
  ``start_node(node)``, ``stop_node(node)``, ``wait_sync()``, ``roles()``, ``user``/``password``.
- ``rabbitmq`` → ``newbank.runtime.RabbitMQ``: ``amqp_url``, ``management_url``, ``user``/``password``
  (``credentials``), ``pid``, ``stop()``, ``start(empty=True)``, ``kill()``, ``queue_depths()``.
- ``haproxy`` → ``newbank.runtime.HAProxy`` with empty backends: ``url``, ``add_server(backend, name,
  port)``, ``remove_server(backend, name)``, ``server_states(backend)``, ``runtime(cmd)``, ``pid``.
- ``runtime_tmp`` → the session's temporary folder (readable by the ``postgres`` user).
- ``newbank_platform`` → a whole ``newbank up`` (``tests/fixtures/local_platform.LocalPlatform``) shared by
  the session: ``ingress_url``, ``admin_token``, ``layout`` (ports, ``pg_cluster()``, ``rabbitmq()``,
  ``haproxy()``), ``cli(*args)``. Do not ``down`` it; scale it back when a test changed the count.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES_DIR))
# The load tools live in ``loadtest/`` at the top of the repository, not in the installed package. Put it
# first, before any test imports them: pytest puts this file's folder (``tests/``) on the path, and under
# the ``pytest`` script (no current folder on the path) ``tests/loadtest/`` was taken for them as a
# namespace package.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from local_platform import LocalPlatform  # noqa: E402 - after the path set-up above

from newbank.runtime import (  # noqa: E402
    HAProxy,
    PgCluster,
    RabbitMQ,
    free_ports,
    start_pg_cluster,
    stop_pg_cluster,
)


def _interrupt_on_sigterm() -> None:
    """SIGTERM (e.g. CI's ``timeout``) becomes a KeyboardInterrupt, so fixtures still stop their servers."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


_interrupt_on_sigterm()


def _run_once(stop: Callable[[], None]) -> Callable[[], None]:
    """Wrap ``stop`` so the finalizer and atexit never run it twice."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            stop()

    atexit.register(run)
    return run


@pytest.fixture(scope="session")
def runtime_tmp() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="newbank-test-", dir="/tmp"))
    os.chmod(root, 0o755)  # the postgres user must reach its data folders below
    yield root
    if os.environ.get("NEWBANK_KEEP_TEST_DATA") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(runtime_tmp: Path) -> Iterator[PgCluster]:
    cluster = start_pg_cluster(runtime_tmp / "postgres", free_ports(6))
    stop = _run_once(lambda: stop_pg_cluster(cluster))
    try:
        yield cluster
    finally:
        stop()


@pytest.fixture(scope="session")
def rabbitmq(runtime_tmp: Path) -> Iterator[RabbitMQ]:
    broker = RabbitMQ(runtime_tmp / "rabbitmq", *free_ports(4))
    stop = _run_once(lambda: broker.stop(keep_epmd=False))
    try:
        broker.start(empty=True)
        yield broker
    finally:
        stop()


@pytest.fixture(scope="session")
def haproxy(runtime_tmp: Path) -> Iterator[HAProxy]:
    port, stats_port = free_ports(2)
    ingress = HAProxy(runtime_tmp / "haproxy", port, stats_port)
    stop = _run_once(ingress.stop)
    try:
        ingress.start()
        yield ingress
    finally:
        stop()


@pytest.fixture(scope="session")
def newbank_platform() -> Iterator[LocalPlatform]:
    platform = LocalPlatform()
    stop = _run_once(platform.tear_down)
    try:
        platform.up()
        yield platform
    finally:
        stop()
