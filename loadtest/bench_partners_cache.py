"""Cached against uncached read throughput of ``GET /api/v1/partners`` (one machine, one run).

Starts two partners instances (uvicorn, one process each) on the same cashback database: one with the
in-process cache (``NEWBANK_PARTNERS_CACHE_TTL_S=1.5``, the default) and one without (TTL 0: every
request reads PostgreSQL). Seeds partner stores under a category of its own, drives the two in
alternating one-second slices (so both see the same background load of a shared machine) with the same
mix of requests from a lean keep-alive HTTP/1.1 client, prints requests per second, latency percentiles
and the service's own CPU time per request (from /proc), then removes what it seeded and stops what it
started (by PID).

    .venv/bin/python loadtest/bench_partners_cache.py                      # starts its own PG + RabbitMQ
    .venv/bin/python loadtest/bench_partners_cache.py --dsn postgresql://… --amqp-url amqp://…

The mix: 60 % listing pages (filters by country, first pages), 40 % single stores by id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

COUNTRIES = ["DE", "FR", "IT", "ES", "NL"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_infrastructure() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL cluster and RabbitMQ node from newbank.runtime, stopped by PID after."""
    from newbank.runtime import RabbitMQ, free_ports, start_pg_cluster, stop_pg_cluster

    root = Path(tempfile.mkdtemp(prefix="bench-partners-", dir="/tmp"))
    os.chmod(root, 0o755)
    print(f"starting PostgreSQL and RabbitMQ under {root} ...", flush=True)
    cluster = start_pg_cluster(root / "postgres", free_ports(6))
    broker = RabbitMQ(root / "rabbitmq", *free_ports(4))
    try:
        broker.start(empty=True)
        yield cluster.multi_host_dsn("cashback"), broker.amqp_url
    finally:
        broker.stop(keep_epmd=False)
        stop_pg_cluster(cluster)
        shutil.rmtree(root, ignore_errors=True)


async def seed(dsn: str, category: str, count: int) -> list[uuid.UUID]:
    from newbank.database import migrate

    await migrate(dsn, "cashback")
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO partner_store (merchant_id, name, country, currency, category, registered_at)"
            " VALUES ($1, $2, $3, 'EUR', $4, now())",
            [(m, f"Store {i}", COUNTRIES[i % len(COUNTRIES)], category) for i, m in enumerate(ids)],
        )
        await conn.executemany(
            "WITH s AS (UPDATE partner_store SET offer_version = 1 WHERE merchant_id = $1 RETURNING merchant_id)"
            " INSERT INTO partner_offer (merchant_id, version, rate_bps, set_by) SELECT merchant_id, 1, $2, 'bench'"
            " FROM s",
            [(m, 50 + i % 400) for i, m in enumerate(ids) if i % 2 == 0],
        )
    finally:
        await conn.close()
    return ids


async def unseed(dsn: str, ids: list[uuid.UUID]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM partner_offer WHERE merchant_id = ANY($1::uuid[])", ids)
        await conn.execute("DELETE FROM partner_store WHERE merchant_id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()


def start_instance(dsn: str, amqp_url: str, port: int, ttl_s: float, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NEWBANK_SERVICE": "partners",
        "NEWBANK_INSTANCE_ID": f"bench-{port}",
        "NEWBANK_DATABASE_URL": dsn,
        "NEWBANK_AMQP_URL": amqp_url,
        "NEWBANK_PARTNERS_CACHE_TTL_S": str(ttl_s),
        "NEWBANK_LOG_LEVEL": "WARNING",
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "newbank.partners.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"partners instance on port {port} not ready (log: {log})")


def request_mix(category: str, ids: list[uuid.UUID], count: int) -> list[bytes]:
    rng = random.Random(7)
    paths = []
    for _ in range(count):
        if rng.random() < 0.6:
            country = rng.choice(COUNTRIES)
            paths.append(f"/api/v1/partners?category={category}&country={country}&limit=50")
        else:
            paths.append(f"/api/v1/partners/{rng.choice(ids)}")
    return [f"GET {p} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for p in paths]


async def _connection(port: int, requests: list[bytes], stop_at: float, latencies: list[float]) -> int:
    """One keep-alive connection sending requests back to back; returns the number of 200s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    i = random.randrange(len(requests))
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            ok += status == 200
    finally:
        writer.close()
    return ok


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc: robust on a busy, shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    """One instance's figures, summed over its time slices."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    def summary(self) -> dict[str, float]:
        self.latencies.sort()
        count = len(self.latencies)
        return {
            "requests": count,
            "ok": self.ok,
            "rps": count / self.seconds,
            "p50_ms": statistics.median(self.latencies) * 1000,
            "p99_ms": self.latencies[int(count * 0.99) - 1] * 1000,
            "cpu_us": self.cpu / max(count, 1) * 1e6,
            "cpu_share": self.cpu / self.seconds,
        }


async def drive_slice(
    pid: int, port: int, requests: list[bytes], seconds: float, concurrency: int, tally: Tally
) -> None:
    started = time.perf_counter()
    cpu_before = cpu_seconds(pid)
    tally.ok += await _burst(port, requests, seconds, concurrency, tally.latencies)
    tally.seconds += time.perf_counter() - started
    tally.cpu += cpu_seconds(pid) - cpu_before


async def _burst(port: int, requests: list[bytes], seconds: float, concurrency: int, latencies: list[float]) -> int:
    stop_at = time.perf_counter() + seconds
    counts = await asyncio.gather(*(_connection(port, requests, stop_at, latencies) for _ in range(concurrency)))
    return sum(counts)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def bench(dsn: str, amqp_url: str, args: argparse.Namespace) -> None:
    category = f"bench-{uuid.uuid4().hex[:8]}"
    ids = await seed(dsn, category, args.stores)
    logs = Path(tempfile.mkdtemp(prefix="bench-partners-logs-", dir="/tmp"))
    instances: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    tallies = {"cached": Tally(), "uncached": Tally()}
    try:
        for label, ttl in (("cached", 1.5), ("uncached", 0.0)):
            port = free_port()
            instances[label] = (start_instance(dsn, amqp_url, port, ttl, logs / f"{label}.log"), port)
            wait_ready(port, logs / f"{label}.log")
        mix = request_mix(category, ids, 2000)
        for _, port in instances.values():
            await _burst(port, mix, 1.0, args.concurrency, [])  # warm-up: connections, pools, caches
        # Short alternating slices, so both instances see the same background load of a shared machine.
        rounds = max(1, int(args.seconds))
        print(f"{rounds} rounds of 1 s cached + 1 s uncached, {args.concurrency} connections ...", flush=True)
        for _ in range(rounds):
            for label, (proc, port) in instances.items():
                await drive_slice(proc.pid, port, mix, 1.0, args.concurrency, tallies[label])
    finally:
        for proc, _ in instances.values():
            stop(proc)
        await unseed(dsn, ids)
    results = {label: tally.summary() for label, tally in tallies.items()}
    print()
    print(f"GET /api/v1/partners (+ /{{id}}), {args.stores} stores, one uvicorn process per instance")
    print(f"{'':10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'200s':>8}{'CPU us/req':>12}{'CPU used':>10}")
    for label, r in results.items():
        print(
            f"{label:10}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['requests']:>10}{r['ok']:>8}"
            f"{r['cpu_us']:>12.0f}{r['cpu_share']:>9.0%}"
        )
    cached, uncached = results["cached"], results["uncached"]
    print(f"cached / uncached throughput: {cached['rps'] / uncached['rps']:.1f}x")
    print(
        f"service CPU per request: {cached['cpu_us']:.0f} us cached vs {uncached['cpu_us']:.0f} us uncached "
        f"(+ PostgreSQL's own CPU for every uncached request); load average now {os.getloadavg()[0]:.1f}"
    )
    print(f"instance logs: {logs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DSN", ""), help="cashback database DSN")
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", ""))
    parser.add_argument("--stores", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per instance (1 s slices)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.dsn and args.amqp_url:
        asyncio.run(bench(args.dsn, args.amqp_url, args))
        return
    with own_infrastructure() as (dsn, amqp_url):
        asyncio.run(bench(dsn, amqp_url, args))


if __name__ == "__main__":
    main()
