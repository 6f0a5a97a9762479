"""A small real HTTP server that exposes transaction-service metrics under a settable load.

``load_rps`` requests per second are spread over the instances the caller lists; each instance
``/i/<n>/metrics`` shows its own counters in the services' Prometheus format, advancing with the
wall clock like a real instance under that load. Listens on 127.0.0.1, a free port.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoadMetricsServer:
    def __init__(self, load_rps: float = 0.0, latency_s: float = 0.02) -> None:
        self.load_rps = load_rps
        self.latency_s = latency_s
        self.instances = 1
        self.flushes = 0
        self._requests: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "i" and parts[2] == "metrics":
                    body = owner.page(int(parts[1])).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                if self.path.endswith("/internal/outbox/flush"):
                    with owner._lock:
                        owner.flushes += 1
                    self.send_response(202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, instance: int) -> str:
        return f"http://127.0.0.1:{self.port}/i/{instance}"

    def page(self, instance: int) -> str:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(instance, now)
            share = self.load_rps / max(self.instances, 1)
            total = self._requests.get(instance, 0.0) + share * (now - last)
            self._requests[instance], self._last[instance] = total, now
        count = int(total)
        fast = count if self.latency_s <= 0.05 else 0
        labels = 'service="transactions",route="/api/v1/payments"'
        return (
            "# TYPE newbank_http_requests_total counter\n"
            f'newbank_http_requests_total{{{labels},method="POST",status="201"}} {count}\n'
            "# TYPE newbank_http_requests_in_flight gauge\n"
            f'newbank_http_requests_in_flight{{service="transactions"}} {share * self.latency_s:.3f}\n'
            "# TYPE newbank_http_request_duration_seconds histogram\n"
            f'newbank_http_request_duration_seconds_bucket{{{labels},le="0.05"}} {fast}\n'
            f'newbank_http_request_duration_seconds_bucket{{{labels},le="0.25"}} {count}\n'
            f'newbank_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}\n'
            f"newbank_http_request_duration_seconds_count{{{labels}}} {count}\n"
            f"newbank_http_request_duration_seconds_sum{{{labels}}} {count * self.latency_s}\n"
            "# TYPE newbank_outbox_pending gauge\nnewbank_outbox_pending 0\n"
        )

    def start(self) -> LoadMetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
