"""The real HAProxy in front of one in-process HTTP server standing in for a transaction instance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from newbank.runtime import free_ports
from newbank.runtime.haproxy import HAProxy


class JsonInstance(BaseHTTPRequestHandler):
    """A stand-in's handler: ``answer`` sends a JSON body; no access log of its own."""

    def answer(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def ingress_in_front(folder: Path, make_server: Callable[[tuple[str, int]], HTTPServer]) -> Iterator[HAProxy]:
    """HAProxy routing the transactions' paths to the server ``make_server(address)`` builds, once its
    health check says UP; both stopped at the end."""
    instance_port, port, stats_port = free_ports(3)
    server = make_server(("127.0.0.1", instance_port))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = HAProxy(folder / "haproxy", port, stats_port, servers={"transactions": [("t1", instance_port)]})
    try:
        proxy.start()
        deadline = time.monotonic() + 10
        while proxy.server_states("transactions")["t1"]["status"] != "UP":
            assert time.monotonic() < deadline, "the instance never came UP"
            time.sleep(0.2)
        yield proxy
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()
