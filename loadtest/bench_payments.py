"""Payments per second through one transaction-service instance.

Sets up merchants and funded customer accounts through the accounts service (httpx), then sends
payments with ``--concurrency`` keep-alive connections (``raw_http``) to one transaction-service instance and
prints throughput, latency percentiles and status counts. With ``--service-pid`` it also reads the
instance's CPU time from /proc, giving payments per CPU-second (the figure that matters for a
service capped at 500m CPU: throughput at half a core ≈ 0.5 × payments per CPU-second).

    python -m loadtest.bench_payments --accounts-url http://127.0.0.1:8101 \\
        --transactions-url http://127.0.0.1:8102 --admin-token "$NEWBANK_ADMIN_TOKEN" --service-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from loadtest.raw_http import KeepAliveConnection, ResponseError


@dataclass
class BenchResult:
    payments: int
    seconds: float
    statuses: Counter[int]
    latencies_ms: list[float]
    service_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.statuses.get(201, 0) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        lines = [
            f"payments sent:      {self.payments} in {self.seconds:.2f} s",
            f"statuses:           {dict(sorted(self.statuses.items()))}",
            f"payments/s (201):   {self.per_second:.0f}",
            f"latency ms:         p50 {self.percentile(50):.1f}  p95 {self.percentile(95):.1f}  "
            f"p99 {self.percentile(99):.1f}  mean {statistics.fmean(self.latencies_ms):.1f}",
        ]
        if self.service_cpu_s:
            per_cpu_s = self.statuses.get(201, 0) / self.service_cpu_s
            lines += [
                f"service CPU:        {self.service_cpu_s:.2f} s ({self.service_cpu_s / self.seconds:.0%} of one core)",
                f"payments/CPU-s:     {per_cpu_s:.0f}  (→ ~{per_cpu_s / 2:.0f} payments/s at 50% of a core)",
            ]
        return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def set_up(accounts_url: str, admin_token: str, merchants: int, customers: int) -> tuple[list[str], list[str]]:
    """Merchants (their keys) and funded EUR customer accounts (their ids)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=accounts_url, timeout=30) as client:

        async def merchant(i: int) -> str:
            address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{i % 250 + 1}"
            response = await client.post(
                "/api/v1/merchants",
                json={"name": f"Bench shop {i}", "country": "DE", "currency": "EUR"},
                headers={"X-Forwarded-For": address},
            )
            response.raise_for_status()
            return response.json()["api_key"]

        async def account(i: int) -> str:
            response = await client.post(
                "/api/v1/customers", json={"name": f"Bench {i}", "country": "DE"}, headers=admin
            )
            response.raise_for_status()
            created = await client.post(
                "/api/v1/accounts", json={"customer_id": response.json()["id"], "currency": "EUR"}, headers=admin
            )
            created.raise_for_status()
            account_id = created.json()["id"]
            funded = await client.post(
                f"/api/v1/accounts/{account_id}/deposits",
                json={"amount": 1_000_000_000, "currency": "EUR"},
                headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
            )
            funded.raise_for_status()
            return account_id

        keys = [await merchant(i) for i in range(merchants)]
        account_ids = list(await asyncio.gather(*(account(i) for i in range(customers))))
    return keys, account_ids


async def send_payments(
    transactions_url: str,
    merchant_keys: list[str],
    account_ids: list[str],
    payments: int,
    concurrency: int,
) -> tuple[Counter[int], list[float], float]:
    """``concurrency`` keep-alive connections, each sending its next payment when the last is answered.

    The raw client (``raw_http``) spends a small fraction of what httpx does per request, so the
    instance, not the benchmark, is what runs out of CPU.
    """
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    counter = iter(range(payments))

    async def worker() -> None:
        connection = KeepAliveConnection(transactions_url)
        try:
            for n in counter:
                key = merchant_keys[n % len(merchant_keys)]
                body = orjson.dumps(
                    {"account_id": account_ids[n % len(account_ids)], "amount": 1 + n % 500, "currency": "EUR"}
                )
                headers = {
                    "Authorization": f"Bearer {key}",
                    "Idempotency-Key": uuid.uuid4().hex,
                    "Content-Type": "application/json",
                }
                start = time.perf_counter()
                try:
                    status, _ = await connection.request("POST", "/api/v1/payments", headers, body)
                    statuses[status] += 1
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ResponseError):
                    statuses[0] += 1
                latencies.append((time.perf_counter() - start) * 1000)
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return statuses, latencies, elapsed


async def run_benchmark(
    accounts_url: str,
    transactions_url: str,
    admin_token: str,
    *,
    payments: int = 5_000,
    concurrency: int = 50,
    merchants: int = 10,
    customers: int = 200,
    warmup: int = 300,
    service_pid: int | None = None,
) -> BenchResult:
    keys, account_ids = await set_up(accounts_url, admin_token, merchants, customers)
    await send_payments(transactions_url, keys, account_ids, warmup, concurrency)  # caches, pools, plans
    cpu_before = cpu_seconds(service_pid) if service_pid else None
    statuses, latencies, elapsed = await send_payments(transactions_url, keys, account_ids, payments, concurrency)
    cpu_used = cpu_seconds(service_pid) - cpu_before if service_pid and cpu_before is not None else None
    return BenchResult(payments, elapsed, statuses, latencies, cpu_used)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts-url", default="http://127.0.0.1:8080")
    parser.add_argument("--transactions-url", default="http://127.0.0.1:8080")
    parser.add_argument("--admin-token", default=os.environ.get("NEWBANK_ADMIN_TOKEN", ""))
    parser.add_argument("--payments", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--merchants", type=int, default=10)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--service-pid", type=int, default=None, help="the transaction-service process, for CPU")
    args = parser.parse_args(argv)
    if not args.admin_token:
        parser.error("--admin-token (or NEWBANK_ADMIN_TOKEN) is required to set up accounts")
    print(f"benchmark: {args.payments} payments, {args.concurrency} concurrent clients → {args.transactions_url}")
    result = asyncio.run(
        run_benchmark(
            args.accounts_url,
            args.transactions_url,
            args.admin_token,
            payments=args.payments,
            concurrency=args.concurrency,
            merchants=args.merchants,
            customers=args.customers,
            service_pid=args.service_pid,
        )
    )
    print(result.summary())
    return 0 if result.statuses.get(201, 0) == args.payments else 1


if __name__ == "__main__":
    sys.exit(main())
