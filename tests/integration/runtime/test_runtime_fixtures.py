"""The session fixtures really run: replication, the broker's stop/start, HAProxy's live servers."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid

import psycopg2
import pytest

from newbank.runtime import HAProxy, PgCluster, RabbitMQ, procs

pytestmark = pytest.mark.integration


def test_row_written_on_primary_appears_on_replica(pg_cluster: PgCluster) -> None:
    marker = uuid.uuid4().hex
    with psycopg2.connect(pg_cluster.multi_host_dsn("bank")) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS runtime_replication_probe (marker text PRIMARY KEY)")
        cur.execute("INSERT INTO runtime_replication_probe VALUES (%s)", (marker,))
    replica = psycopg2.connect(pg_cluster.replica_dsn("bank"))
    try:
        with replica.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            assert cur.fetchone() == (True,)
            deadline = time.monotonic() + 10
            found = None
            while time.monotonic() < deadline and not found:
                cur.execute("SELECT marker FROM runtime_replication_probe WHERE marker = %s", (marker,))
                found = cur.fetchone()
                time.sleep(0.1)
            assert found == (marker,)
    finally:
        replica.close()


def test_both_databases_and_sync_standby(pg_cluster: PgCluster) -> None:
    for db in ("bank", "cashback"):
        with psycopg2.connect(pg_cluster.primary_dsn(db)) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_user")
            assert cur.fetchone() == (db, pg_cluster.user)
    assert pg_cluster.primary().postmaster_pid and pg_cluster.replica().patroni_pid
    pg_cluster.wait_sync(timeout_s=30)
    assert sorted(pg_cluster.roles().values()) == ["primary", "replica"]


def _declare_queue(rabbitmq: RabbitMQ, name: str) -> None:
    request = urllib.request.Request(
        f"{rabbitmq.management_url}/api/queues/%2F/{name}",
        data=json.dumps({"durable": True}).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    token = base64.b64encode(f"{rabbitmq.user}:{rabbitmq.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status in (201, 204)


def test_rabbitmq_stops_and_starts_empty(rabbitmq: RabbitMQ) -> None:
    # Services of other tests may share this broker and re-declare their queues at once after the
    # restart, so "empty" is checked with a queue of our own: gone after start(empty=True).
    marker = f"runtime-probe-{uuid.uuid4().hex[:8]}"
    _declare_queue(rabbitmq, marker)
    assert marker in rabbitmq.queue_depths()
    first_pid = rabbitmq.pid
    assert first_pid and procs.port_open(rabbitmq.amqp_port)
    rabbitmq.stop()
    assert not procs.pid_alive(first_pid)
    assert not procs.port_open(rabbitmq.amqp_port)
    rabbitmq.start(empty=True)
    assert rabbitmq.pid and rabbitmq.pid != first_pid
    assert marker not in rabbitmq.queue_depths()


def test_haproxy_adds_and_removes_a_server_live(haproxy: HAProxy, runtime_tmp) -> None:  # type: ignore[no-untyped-def]
    port = procs.free_port()
    log = runtime_tmp / "standin.log"
    proc = procs.spawn(
        [
            procs.sys_executable(),
            "-m",
            "uvicorn",
            "standin_service:app",
            "--app-dir",
            str(procs.repo_root() / "tests" / "fixtures"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        log,
        env={"NEWBANK_SERVICE": "partners", "NEWBANK_INSTANCE_ID": "partners-x", "PATH": "/usr/bin:/bin"},
    )
    try:
        procs.wait_until(lambda: procs.port_open(port), timeout_s=20, component="standin", log_file=log)
        # A stale server of the same name with another address is replaced, not reused.
        haproxy.add_server("partners", "partners-x", procs.free_port(), wait_up_s=0)
        haproxy.add_server("partners", "partners-x", port)
        assert haproxy.server_states("partners")["partners-x"]["addr"] == f"127.0.0.1:{port}"
        with urllib.request.urlopen(f"{haproxy.url}/api/v1/partners?country=DE", timeout=5) as resp:
            assert json.loads(resp.read())["instance"] == "partners-x"
        with urllib.request.urlopen(f"{haproxy.url}/_/partners/readyz", timeout=5) as resp:
            assert json.loads(resp.read())["path"] == "/readyz"
        for path in ("/internal/keys", "/api/v1/partnersX", "/"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{haproxy.url}{path}", timeout=5)
            assert err.value.code == 404
        haproxy.remove_server("partners", "partners-x")
        assert "partners-x" not in haproxy.server_states("partners")
    finally:
        procs.stop_pid(proc.pid)
