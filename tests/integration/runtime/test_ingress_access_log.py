"""The real HAProxy's access-log switch: every request with its timers while on, only failures while off.

The load test switches it on for its measured window (``loadtest.ingress_log``); the rest of the time a
platform under 24/7 load must not write a line per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from ingress_in_front import JsonInstance, ingress_in_front

from loadtest.ingress_log import IngressLog, read_records
from newbank.runtime import free_ports, procs
from newbank.runtime.haproxy import HAPROXY_BIN, HAProxy, render_config

pytestmark = [pytest.mark.integration]

WORK_S = 0.03


class PaymentsInstance(JsonInstance):
    def do_GET(self) -> None:
        self.answer(b'{"status":"ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/boom"):
            self.answer(b'{"status":500}', 500)
            return
        time.sleep(WORK_S)
        self.answer(b'{"id":"p"}', 201)


@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[HAProxy]:
    with ingress_in_front(tmp_path, lambda address: ThreadingHTTPServer(address, PaymentsInstance)) as proxy:
        yield proxy


def _lines_after(proxy: HAProxy, offset: int) -> list[tuple[str, str, int]]:
    time.sleep(0.3)  # HAProxy writes a line when the request ends; give it a moment
    return [(r.method, r.path, r.status) for r in read_records(proxy.log_file, offset)]


def _when_logged(log: IngressLog, payments: int, timeout_s: float = 5.0) -> dict[str, float] | None:
    """The window's timers once its ``payments`` are logged (or as they are at the deadline): a line is
    written when its stream ends, just after the client has its answer."""
    deadline = time.monotonic() + timeout_s
    while (times := log.payment_times()) is not None and times["n"] < payments and time.monotonic() < deadline:
        time.sleep(0.05)
    return times


def test_off_logs_only_failures_on_logs_every_request_with_its_timers(ingress: HAProxy) -> None:
    payments = f"{ingress.url}/api/v1/payments"
    with httpx.Client(timeout=10) as client:
        offset = ingress.log_file.stat().st_size
        assert client.post(payments, json={}).status_code == 201
        assert client.post(f"{payments}/boom", json={}).status_code == 500
        assert client.get(f"{ingress.url}/nowhere").status_code == 404  # HAProxy's own answer
        assert _lines_after(ingress, offset) == [
            ("POST", "/api/v1/payments/boom", 500),
            ("GET", "/nowhere", 404),
        ]

        log = IngressLog(ingress)
        log.start(time.time())
        for _ in range(5):
            assert client.post(payments, json={}).status_code == 201
        log.stop(time.time())
        times = _when_logged(log, 5)
        assert times is not None and times["n"] == 5
        # The instance took WORK_S over each one; nothing waited in HAProxy's queue.
        assert WORK_S * 1000 <= times["p50_ms"] <= times["p99_ms"] and times["server_p99_ms"] >= WORK_S * 1000
        assert times["queue_p99_ms"] == 0

        offset = ingress.log_file.stat().st_size
        assert client.post(payments, json={}).status_code == 201
        assert _lines_after(ingress, offset) == []  # switched off again


def test_a_restart_begins_with_the_access_log_off(ingress: HAProxy) -> None:
    assert ingress.set_access_log(True)
    ingress.stop()
    ingress.start()
    assert "access_log off" in ingress.runtime(f"show map {ingress.access_log_map}")


def test_an_haproxy_without_the_switch_gives_no_timings(tmp_path: Path) -> None:
    port, stats_port = free_ports(2)
    proxy = HAProxy(tmp_path / "old", port, stats_port)
    proxy.root.mkdir(parents=True)
    # The config of a platform started before the switch existed: no map in it.
    proxy.config_file.write_text(render_config(port, proxy.socket_path, {}, stats_port))
    process = procs.spawn([HAPROXY_BIN, "-db", "-f", str(proxy.config_file)], proxy.log_file)
    procs.write_pid(proxy.pid_file, process.pid)
    try:
        procs.wait_until(lambda: proxy.socket_path.exists(), timeout_s=15, component="haproxy", log_file=proxy.log_file)
        assert not proxy.set_access_log(True)
        log = IngressLog(proxy)
        log.start(time.time())
        log.stop(time.time())
        assert log.payment_times() is None
    finally:
        proxy.stop()
