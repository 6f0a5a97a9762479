"""What the ingress saw: HAProxy's own timers for the payments of a measured window.

Locust shares the machine's two cores with the platform, so the latency it measures includes its own
wait for a CPU before it reads an answer. HAProxy times each request itself (``option httplog``): ``Tw``
is the time a request waited in its queue for a free instance slot (``maxconn``), ``Tr`` the time the
instance took to answer, ``Ta`` the whole, from the request's first byte to the response's last. Beside
locust's figures they say how much of a payment's latency the platform spent, how much of that was
waiting for an instance, and how much lies on the client's side of the ingress.

The local runtime logs every request only while its access log is switched on through HAProxy's runtime
API: ``IngressLog`` switches it on for a run's measured window, off again, and reads the lines written
meanwhile. HAProxy stamps a line with its local time, read here in this process's: both run on the same
machine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtest.report import percentile

PAYMENTS_PATH = "/api/v1/payments"

# client [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes cookies(2) termination
# conns(5) queues(2) "method path version"
LINE = re.compile(
    r"^\S+ \[(?P<date>[^\]]+)\] \S+ (?P<backend>[^/\s]+)/\S+ "
    r"-?\d+/(?P<tw>-?\d+)/-?\d+/(?P<tr>-?\d+)/\+?(?P<ta>-?\d+) (?P<status>-?\d+) "
    r"\S+ \S+ \S+ \S+ \S+ \S+ \"(?P<method>[A-Z]+) (?P<path>[^ ?\"]+)"
)


@dataclass(frozen=True, slots=True)
class IngressRecord:
    """One request as HAProxy logged it; a timer is -1 when that stage was never reached."""

    accepted_at: float  # epoch seconds
    backend: str
    queue_ms: int  # Tw: waiting for a free slot of an instance
    server_ms: int  # Tr: the instance's answer, from the request sent to the response's headers
    total_ms: int  # Ta: first byte of the request to last byte of the response
    status: int
    method: str
    path: str


def parse_line(line: str) -> IngressRecord | None:
    """A request line of HAProxy's ``httplog`` format, or None for anything else (start-up notices)."""
    match = LINE.match(line)
    if match is None:
        return None
    try:
        accepted = datetime.strptime(match["date"], "%d/%b/%Y:%H:%M:%S.%f").timestamp()
    except ValueError:
        return None
    return IngressRecord(
        accepted_at=accepted,
        backend=match["backend"],
        queue_ms=int(match["tw"]),
        server_ms=int(match["tr"]),
        total_ms=int(match["ta"]),
        status=int(match["status"]),
        method=match["method"],
        path=match["path"],
    )


def read_records(log_file: Path, offset: int = 0) -> list[IngressRecord]:
    """Every request line written to ``log_file`` after its first ``offset`` bytes."""
    with log_file.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return [record for line in text.splitlines() if (record := parse_line(line)) is not None]


def payment_times(records: list[IngressRecord], start: float, end: float) -> dict[str, float]:
    """Percentiles of the timers of the payments (``POST /api/v1/payments``) accepted in [start, end).

    HAProxy logs its dates truncated to the millisecond, so ``start`` is too: a request received in the
    window's first millisecond is logged up to a millisecond before ``start`` (the CI saw 4 of 5 counted).
    """
    first_ms = math.floor(start * 1000)
    payments = [
        r
        for r in records
        if r.method == "POST"
        and r.path == PAYMENTS_PATH
        and round(r.accepted_at * 1000) >= first_ms
        and r.accepted_at < end
        and r.total_ms >= 0
    ]
    total = [float(r.total_ms) for r in payments]
    queue = [float(r.queue_ms) for r in payments if r.queue_ms >= 0]
    server = [float(r.server_ms) for r in payments if r.server_ms >= 0]
    return {
        "n": float(len(payments)),
        "p50_ms": percentile(total, 50),
        "p95_ms": percentile(total, 95),
        "p99_ms": percentile(total, 99),
        "queue_p50_ms": percentile(queue, 50),
        "queue_p99_ms": percentile(queue, 99),
        "server_p99_ms": percentile(server, 99),
    }


def format_times(times: dict[str, float] | None) -> str:
    """One line for a run's summary."""
    if not times or not times.get("n"):
        return "at the ingress: no timings (not the local platform, or its HAProxy predates the access-log switch)"
    return (
        f"at the ingress (HAProxy's timers, {times['n']:.0f} payments): p50 {times['p50_ms']:.0f} ms, "
        f"p95 {times['p95_ms']:.0f} ms, p99 {times['p99_ms']:.0f} ms; their wait for a free instance slot: "
        f"p50 {times['queue_p50_ms']:.0f} ms, p99 {times['queue_p99_ms']:.0f} ms"
    )


class IngressLog:
    """Switches the local platform's access log on for a window and reads the payments' timers."""

    def __init__(self, haproxy: Any = None) -> None:
        self.haproxy = haproxy  # newbank.runtime.haproxy.HAProxy, or None: nothing to switch
        self.offset = 0
        self.started_at = math.nan
        self.stopped_at = math.nan
        self.on = False

    @classmethod
    def for_platform(cls, home: Path, host: str) -> IngressLog:
        """The ingress of the local platform in ``home``, if the load goes through it."""
        try:
            from newbank.runtime.layout import Layout

            layout = Layout.load(home)
        except ImportError:
            layout = None
        if layout is None or layout.ingress_url != host.rstrip("/"):
            return cls()
        return cls(layout.haproxy())

    def start(self, at: float) -> None:
        if self.haproxy is None:
            return
        try:
            self.offset = self.haproxy.log_file.stat().st_size
            self.on = self.haproxy.set_access_log(True)
        except OSError:
            self.on = False
        self.started_at = at

    def stop(self, at: float) -> None:
        self.stopped_at = at
        if self.on:
            try:
                self.haproxy.set_access_log(False)
            except OSError:
                pass  # HAProxy gone (a chaos run): its next start begins with the log off anyway

    def payment_times(self) -> dict[str, float] | None:
        """None when nothing was logged (no local platform, or one whose HAProxy lacks the switch)."""
        if not self.on:
            return None
        try:
            records = read_records(self.haproxy.log_file, self.offset)
        except OSError:
            return None
        return payment_times(records, self.started_at, self.stopped_at)
