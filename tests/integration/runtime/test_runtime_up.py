"""`newbank up` end to end, on its own state folder and ports (never 8080 or .newbank/).

Up → every component ready → each service's /readyz through HAProxy; replication; cgroup limits;
a killed instance comes back; scale 3 → 1 under traffic without a failed request; down leaves nothing.
Set NEWBANK_TEST_STANDIN=1 to run it against the stand-in app of tests/fixtures instead of the services.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest
import yaml
from local_platform import LocalPlatform, running_platform

from newbank.runtime import cgroups, procs
from newbank.runtime.instances import load_instances
from newbank.runtime.patroni_cluster import WAL
from newbank.runtime.platform import running_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = ("accounts", "transactions", "partners", "cashback")


@pytest.fixture(scope="module")
def platform() -> Iterator[LocalPlatform]:
    """A platform of this module's own: the last test takes it down."""
    with running_platform() as plat:
        yield plat


def test_up_reports_every_component_ready(platform: LocalPlatform) -> None:
    status = platform.cli("status", "--json")
    rows = json.loads(status.stdout)
    components = {row["component"]: row for row in rows}
    assert {"etcd", "postgresql pg0", "postgresql pg1", "rabbitmq", "haproxy", "controller"} <= set(components)
    assert sorted(components[n]["role"] for n in ("postgresql pg0", "postgresql pg1")) == ["primary", "replica"]
    assert [r["component"] for r in rows if r["role"] == "instance"] == [
        "accounts-1",
        "cashback-1",
        "partners-1",
        "transactions-1",
        "transactions-2",
    ]
    assert all(row["ready"] for row in rows), status.stdout
    assert status.returncode == 0
    token_file = platform.home / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.read_text().strip()


def test_second_up_reports_what_runs(platform: LocalPlatform) -> None:
    before = running_pids(platform.layout)
    again = platform.cli("up")
    assert again.returncode == 0, again.stdout
    assert "already running" in again.stdout
    assert running_pids(platform.layout) == before


def test_each_service_readyz_through_haproxy(platform: LocalPlatform) -> None:
    ingress = platform.layout.ingress_url
    with httpx.Client(base_url=ingress, timeout=5) as client:
        for service in SERVICES:
            response = client.get(f"/_/{service}/readyz")
            assert response.status_code == 200, (service, response.text)
        assert client.get("/api/v1/partners").status_code == 200
        assert client.get("/internal/anything").status_code == 404


def _backend_connects(platform: LocalPlatform, backend: str) -> int:
    rows = platform.layout.haproxy().stats()
    return next(int(r["connect"]) for r in rows if r["pxname"] == backend and r["svname"] == "BACKEND")


def test_ingress_reuses_connections_to_instances(platform: LocalPlatform) -> None:
    """HAProxy 2.6 never reuses a connection to a server added at run time: every request then cost
    the instance a TCP connection. Instances take slots declared in the config, which it reuses."""
    before = _backend_connects(platform, "partners")
    with httpx.Client(base_url=platform.layout.ingress_url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/api/v1/partners").status_code == 200
    opened = _backend_connects(platform, "partners") - before
    assert 1 <= opened <= 2, f"{opened} connections opened to partners-1 for 20 requests"


def test_ingress_runs_one_thread(platform: LocalPlatform) -> None:
    """On two cores shared with the platform a second HAProxy thread cost CPU and bought nothing."""
    pid = platform.layout.haproxy().pid
    assert pid is not None
    threads = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Threads:"))
    assert threads.split() == ["Threads:", "1"]


def test_broker_runs_one_scheduler(platform: LocalPlatform) -> None:
    """Likewise one Erlang scheduler: the broker needs ~0.1 core here, a second one cost CPU."""
    answer = platform.layout.rabbitmq().ctl("eval", "erlang:system_info(schedulers_online).")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "1"


def test_instances_run_with_startup_objects_frozen(platform: LocalPlatform) -> None:
    """Each instance's collector, as it reports it: start-up's objects frozen, young collections rare."""
    if platform.standin:
        pytest.skip("the stand-in app is not a NewBank service")
    for inst in load_instances(platform.layout):
        metrics = httpx.get(f"http://127.0.0.1:{inst.port}/metrics", timeout=5).text
        values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("newbank_gc_"))
        assert float(values["newbank_gc_frozen_objects"]) > 10_000, inst.name
        assert float(values['newbank_gc_threshold{generation="0"}']) == 10_000, inst.name


def test_row_on_primary_appears_on_replica(platform: LocalPlatform) -> None:
    cluster = platform.layout.pg_cluster()
    marker = uuid.uuid4().hex
    with psycopg2.connect(cluster.multi_host_dsn("cashback")) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS up_replication_probe (marker text PRIMARY KEY)")
        cur.execute("INSERT INTO up_replication_probe VALUES (%s)", (marker,))
    replica = psycopg2.connect(cluster.replica_dsn("cashback"))
    try:
        replica.autocommit = True
        with replica.cursor() as cur:
            found = None
            deadline = time.monotonic() + 10
            while not found and time.monotonic() < deadline:
                cur.execute("SELECT marker FROM up_replication_probe WHERE marker = %s", (marker,))
                found = cur.fetchone()
                time.sleep(0.1)
            assert found == (marker,)
    finally:
        replica.close()


def test_database_connections_name_their_instance(platform: LocalPlatform) -> None:
    """An SRE looking at pg_stat_activity sees which service instance holds each connection."""
    cluster = platform.layout.pg_cluster()
    with psycopg2.connect(cluster.multi_host_dsn("bank")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT application_name, datname FROM pg_stat_activity WHERE application_name LIKE 'newbank-%'"
        )
        named = set(cur.fetchall())
    assert {
        ("newbank-accounts-1", "bank"),
        ("newbank-transactions-1", "bank"),
        ("newbank-transactions-2", "bank"),
        ("newbank-cashback-1", "cashback"),
        ("newbank-partners-1", "cashback"),
    } <= named, named


def test_postgresql_runs_with_the_charts_wal_settings(platform: LocalPlatform) -> None:
    """The local clusters compress full-page images as the chart's CloudNativePG clusters do, on both nodes."""
    chart_values = yaml.safe_load((Path(__file__).parents[3] / "charts" / "newbank" / "values.yaml").read_text())
    expected = chart_values["postgres"]["cloudnativepg"]["parameters"]
    assert expected == WAL
    cluster = platform.layout.pg_cluster()
    for dsn in (cluster.multi_host_dsn("bank"), cluster.replica_dsn("bank")):
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            for name, value in expected.items():
                cur.execute("SELECT current_setting(%s)", (name,))
                assert cur.fetchone() == (value,), (dsn.split("@")[-1], name)


def test_cgroup_limits_are_applied(platform: LocalPlatform) -> None:
    reason = cgroups.available()
    if reason:
        pytest.skip(f"cgroup v1 not writable here: {reason}")
    for inst in load_instances(platform.layout):
        limits = cgroups.read_limits(platform.home, inst.name)
        expected = cgroups.LIMITS[inst.service]
        assert limits == expected, inst.name
        assert inst.pid in cgroups.pids_in(platform.home, inst.name)
        # The transaction instances' requests are guaranteed, as on Kubernetes: their groups outweigh
        # the root group's tasks. The other services weigh one such task each.
        shares = (8192, 8192) if inst.service == "transactions" else (1024,)
        assert cgroups.read_shares(platform.home, inst.name) == shares, inst.name
    by_service = {i.service: cgroups.read_limits(platform.home, i.name) for i in load_instances(platform.layout)}
    assert by_service["transactions"] == cgroups.Limits(50_000, 300 * 1024 * 1024, guaranteed=True)
    assert by_service["accounts"] == cgroups.Limits(30_000, 200 * 1024 * 1024)


def test_killed_instance_comes_back(platform: LocalPlatform) -> None:
    victim = next(i for i in load_instances(platform.layout) if i.service == "transactions")
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = {i.name: i for i in load_instances(platform.layout)}
        back = now.get(victim.name)
        if back and back.pid != victim.pid and back.alive() and back.probe("/readyz"):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"{victim.name} was not restarted")


def _hammer(url: str, stop: threading.Event, results: Counter[str]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                status = client.get(url).status_code
                results["ok" if status < 500 else f"http {status}"] += 1
            except httpx.HTTPError as exc:
                results[type(exc).__name__] += 1


def test_scale_up_and_down_under_traffic(platform: LocalPlatform) -> None:
    url = f"{platform.layout.ingress_url}/_/transactions/healthz"
    stop, results = threading.Event(), Counter[str]()
    workers = [threading.Thread(target=_hammer, args=(url, stop, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        up3 = platform.cli("scale", "transactions", "3")
        assert up3.returncode == 0, up3.stdout
        assert len([i for i in load_instances(platform.layout) if i.service == "transactions"]) == 3
        time.sleep(2)
        down1 = platform.cli("scale", "transactions", "1")
        assert down1.returncode == 0, down1.stdout
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    instances = [i for i in load_instances(platform.layout) if i.service == "transactions"]
    assert len(instances) == 1
    assert set(platform.layout.haproxy().server_states("transactions")) == {instances[0].name}
    assert results["ok"] > 100 and set(results) == {"ok"}, results


def test_down_leaves_no_process(platform: LocalPlatform) -> None:
    layout = platform.layout
    pids = running_pids(layout)
    assert len(pids) >= 10
    result = platform.cli("down")
    assert result.returncode == 0, result.stdout
    time.sleep(0.5)
    assert running_pids(layout) == {}
    assert all(not procs.pid_alive(pid) for pid in pids.values())
    leftovers = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                cmdline = (proc_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if str(platform.home).encode() in cmdline and procs.pid_alive(int(proc_dir.name)):
                leftovers.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert leftovers == []
    for port in (layout.ingress_port, layout.ports["amqp"], layout.ports["pg0"], layout.ports["etcd_client"]):
        assert not procs.port_open(port)
