"""The real HAProxy under more requests than an instance can take: it queues them, it does not eject it.

The instance here is an HTTP server that answers one request at a time, 20 ms each — an event loop
with more work than CPU. Its health check waits in the same line as the requests. Without a per-server
``maxconn`` HAProxy would hand it every client's request at once, the check would wait seconds behind
them, and the busy-but-alive instance would be marked DOWN ("503 No server is available").
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path

import httpx
import pytest
from ingress_in_front import JsonInstance, ingress_in_front

from newbank.runtime.haproxy import SERVER_MAXCONN, HAProxy

pytestmark = [pytest.mark.integration]

WORK_S = 0.02
CLIENTS = 300  # six times maxconn: HAProxy's queue holds the rest (300 × 20 ms = 6 s > the 3 s check timeout)
LOAD_S = 8.0


class SerialInstance(JsonInstance):
    def do_GET(self) -> None:
        self.answer(b'{"status":"ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(WORK_S)
        self.answer(b'{"id":"p"}')


class _Backlogged(HTTPServer):
    request_queue_size = 1024  # connections wait in the kernel's backlog, as they would at a busy uvicorn

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a health check HAProxy gave up on resets its connection: expected under this load


@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[HAProxy]:
    with ingress_in_front(tmp_path, lambda address: _Backlogged(address, SerialInstance)) as proxy:
        yield proxy


async def test_a_saturated_instance_stays_in_rotation_and_nothing_gets_a_503(ingress: HAProxy) -> None:
    statuses: Counter[int] = Counter()
    states: Counter[str] = Counter()
    stop_at = time.monotonic() + LOAD_S

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            response = await http.post("/api/v1/payments", json={"amount": 1})
            statuses[response.status_code] += 1

    async def watch() -> None:
        while time.monotonic() < stop_at:
            states[(await asyncio.to_thread(ingress.server_states, "transactions"))["t1"]["status"]] += 1
            await asyncio.sleep(0.25)

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=ingress.url, limits=limits, timeout=30) as http:
        await asyncio.gather(watch(), *(client(http) for _ in range(CLIENTS)))

    row = ingress.server_states("transactions")["t1"]
    backend = next(r for r in ingress.stats() if r["pxname"] == "transactions" and r["svname"] == "BACKEND")
    assert set(states) == {"UP"}, f"the instance left rotation: {dict(states)}"
    assert set(statuses) == {200}, dict(statuses)
    assert statuses[200] >= LOAD_S / WORK_S * 0.5  # it really was saturated the whole time
    assert int(row["smax"]) <= SERVER_MAXCONN, f"HAProxy sent {row['smax']} requests at once"
    queued = max(int(row["qmax"] or 0), int(backend["qmax"] or 0))
    assert queued > SERVER_MAXCONN, f"at most {queued} waited in HAProxy's queue: the test did not overload"
