"""The controller's infrastructure supervisor inside a real ``newbank up`` (stand-in services, own ports).

A killed etcd, Patroni agent (replica's, then primary's) or RabbitMQ node is started again by the
controller, not by the test; a held component stays down until the hold is released; ``newbank status``
counts the restarts; ``newbank down`` is not fought (nothing comes back after it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from local_platform import LocalPlatform, running_platform

from newbank.runtime import procs
from newbank.runtime.platform import running_pids
from newbank.runtime.supervisor import hold, release

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def platform() -> Iterator[LocalPlatform]:
    with running_platform(standin=True) as plat:
        yield plat


def _until(check: Callable[[], object], timeout_s: float, interval_s: float = 0.1) -> float:
    """Seconds until ``check()`` is truthy; fails the test after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if check():
                return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(interval_s)
    pytest.fail(f"not within {timeout_s} s: {check}")


def _kill(pid: int | None) -> int:
    assert pid
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarts(platform: LocalPlatform) -> dict[str, int]:
    rows = json.loads(platform.cli("status", "--json").stdout)
    return {row["component"]: row["restarts"] for row in rows}


def test_killed_etcd_is_restarted(platform: LocalPlatform) -> None:
    etcd, cluster = platform.layout.etcd(), platform.layout.pg_cluster()
    cluster.wait_sync(timeout_s=60)
    primary = cluster.primary()
    postmasters = {n.name: n.postmaster_pid for n in cluster.nodes}
    old = _kill(etcd.pid)
    took = _until(lambda: etcd.pid not in (None, old) and etcd.healthy(), 20)
    print(f"etcd back and healthy {took:.1f} s after kill -9")
    _until(lambda: sorted(str(r) for r in cluster.roles().values()) == ["primary", "replica"], 60)
    # Back within Patroni's retry_timeout (5 s): the leader never lost its key, nothing was demoted.
    assert primary.is_primary()
    assert {n.name: n.postmaster_pid for n in cluster.nodes} == postmasters


def test_killed_patroni_agents_are_restarted_before_any_failover(platform: LocalPlatform) -> None:
    cluster = platform.layout.pg_cluster()
    cluster.wait_sync(timeout_s=60)
    primary, replica = cluster.primary(), cluster.replica()
    postmasters = {n.name: n.postmaster_pid for n in cluster.nodes}
    for node in (replica, primary):
        old = _kill(node.patroni_pid)
        took = _until(lambda node=node, old=old: node.patroni_pid not in (None, old), 10)
        print(f"patroni {node.name} restarted {took:.1f} s after kill -9")
        assert took < 10  # measured 0.1-0.6 s; bound at half the leader key's ttl (20 s) for a busy CI machine
        # The restarted agent takes its running postgres back (a leader first renews its lease).
        _until(primary.is_primary if node is primary else replica.is_replica, 30)
    # No failover, nothing restarted: the same node leads, the other follows as the synchronous standby.
    assert {n.name: n.postmaster_pid for n in cluster.nodes} == postmasters
    assert primary.is_primary() and not replica.is_primary()
    _until(replica.is_sync_standby, 30)


def test_a_held_broker_stays_down_until_released(platform: LocalPlatform) -> None:
    rabbit = platform.layout.rabbitmq()
    hold(platform.home, "rabbitmq", "test: broker kept down", ttl_s=120)
    try:
        _kill(rabbit.pid)
        time.sleep(4)  # eight supervisor ticks
        assert rabbit.pid is None
        rows = {r["component"]: r for r in json.loads(platform.cli("status", "--json").stdout)}
        assert "held: test: broker kept down" in rows["rabbitmq"]["note"]
    finally:
        release(platform.home, "rabbitmq")
    took = _until(lambda: rabbit.pid and rabbit.ready(), 120, 0.5)
    print(f"rabbitmq back and ready {took:.1f} s after the hold was released")


def test_status_counts_the_restarts(platform: LocalPlatform) -> None:
    print(platform.cli("status").stdout)
    restarts = _restarts(platform)
    assert restarts["etcd"] >= 1 and restarts["rabbitmq"] >= 1
    assert restarts["postgresql pg0"] >= 1 and restarts["postgresql pg1"] >= 1
    log = (platform.home / "logs" / "controller.log").read_text()
    assert "supervisor: restarting etcd" in log and "supervisor: restarting rabbitmq" in log


def test_down_is_not_fought(platform: LocalPlatform) -> None:
    layout = platform.layout
    result = platform.cli("down")
    assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(2)
    assert running_pids(layout) == {}
    assert not (platform.home / "hold").exists() or not any((platform.home / "hold").iterdir())
    assert not procs.port_open(layout.ports["etcd_client"]) and not procs.port_open(layout.ports["amqp"])
