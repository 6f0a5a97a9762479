"""Reading HAProxy's request lines: the payments' timers within a window, and nothing else."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from loadtest.ingress_log import IngressLog, format_times, parse_line, payment_times, read_records

# Lines as HAProxy 2.6 writes them with ``option httplog`` (the first one copied from a run's log).
PAYMENT = (
    "127.0.0.1:44230 [27/Nov/2026:08:50:12.639] ingress transactions/transactions-1 0/12/0/100/112 201 530 - - "
    '---- 1000/1000/0/0/0 0/0 "POST /api/v1/payments HTTP/1.1"'
)
REFUND = (
    "127.0.0.1:43848 [27/Nov/2026:08:50:12.641] ingress transactions/transactions-1 0/0/0/98/98 201 324 - - "
    '---- 1000/1000/1/1/0 0/0 "POST /api/v1/payments/01a21c32-0cdd-7d4a-81a7-76dc5186cba0/refunds HTTP/1.1"'
)
QUEUE_TIMEOUT = (
    "127.0.0.1:40000 [27/Nov/2026:08:50:13.000] ingress transactions/<NOSRV> 0/10001/-1/-1/10001 503 217 - - "
    'sQ-- 1000/1000/950/0/0 0/940 "POST /api/v1/payments HTTP/1.1"'
)
NO_ROUTE = (
    "127.0.0.1:45500 [27/Nov/2026:08:50:14.500] ingress no_route/<NOSRV> 0/-1/-1/-1/0 404 190 - - LR-- "
    '1/1/0/0/0 0/0 "GET /nowhere?x=1 HTTP/1.1"'
)


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S.%f").timestamp()


def test_a_request_line_gives_its_timers_and_its_local_time() -> None:
    record = parse_line(PAYMENT)
    assert record is not None
    assert (record.backend, record.method, record.path) == ("transactions", "POST", "/api/v1/payments")
    assert record.status == 201
    assert (record.queue_ms, record.server_ms, record.total_ms) == (12, 100, 112)
    assert record.accepted_at == _epoch("27/Nov/2026:08:50:12.639")
    no_route = parse_line(NO_ROUTE)
    assert no_route is not None and no_route.path == "/nowhere" and no_route.queue_ms == -1


def test_lines_that_are_not_requests_are_skipped() -> None:
    assert parse_line("[NOTICE]   (16124) : New worker (16125) forked") is None
    assert parse_line("") is None
    assert parse_line(PAYMENT.replace("27/Nov/2026", "27/Foo/2026")) is None


def test_payment_times_keep_the_payments_of_the_window(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    earlier = PAYMENT.replace("08:50:12.639", "08:40:00.000").replace("0/12/0/100/112", "0/0/0/5000/5000")
    log.write_text("\n".join([earlier, PAYMENT, REFUND, QUEUE_TIMEOUT, NO_ROUTE]) + "\n")
    records = read_records(log)
    assert len(records) == 5
    start, end = _epoch("27/Nov/2026:08:50:12.000"), _epoch("27/Nov/2026:08:50:14.000")
    times = payment_times(records, start, end)
    # The refund, the other path and the line before the window are left out; the 503 counts.
    assert times["n"] == 2
    assert (times["p50_ms"], times["p99_ms"]) == (112, 10001)
    assert (times["queue_p50_ms"], times["queue_p99_ms"]) == (12, 10001)
    assert times["server_p99_ms"] == 100  # the 503 never reached an instance
    assert "2 payments" in format_times(times) and "p99 10001 ms" in format_times(times)


def test_a_payment_received_in_the_windows_first_millisecond_counts(tmp_path: Path) -> None:
    """HAProxy truncates its dates to the millisecond: 12.639 may be a request received at 12.6394."""
    log = tmp_path / "haproxy.log"
    log.write_text(PAYMENT + "\n")
    start = _epoch("27/Nov/2026:08:50:12.639") + 0.0004
    assert payment_times(read_records(log), start, start + 1)["n"] == 1
    assert payment_times(read_records(log), start + 0.001, start + 1)["n"] == 0


def test_read_records_starts_at_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    log.write_text(PAYMENT + "\n")
    offset = log.stat().st_size
    with log.open("a") as out:
        out.write(QUEUE_TIMEOUT + "\n")
    assert [r.status for r in read_records(log, offset)] == [503]


def test_without_an_ingress_to_switch_there_are_no_timings(tmp_path: Path) -> None:
    ingress = IngressLog.for_platform(tmp_path, "http://127.0.0.1:1")  # no platform in that folder
    ingress.start(0.0)
    ingress.stop(1.0)
    assert ingress.payment_times() is None
    assert "no timings" in format_times(None)
    assert math.isnan(payment_times([], 0, 1)["p99_ms"])
