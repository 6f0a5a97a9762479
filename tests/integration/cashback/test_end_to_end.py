"""The whole cashback story through the HAProxy ingress, with every service a real uvicorn process:
accounts, transactions, two partners instances and cashback, on the session's PostgreSQL pair and
RabbitMQ. Nothing is simulated: merchant onboarding, payments, refunds and redemptions go through the
public API, the events through the outboxes, the broker and the inboxes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from cashback_story import cashback_story

from newbank.runtime import HAProxy, PgCluster, RabbitMQ, free_port, stop_pid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_TOKEN = "e2e-admin-" + secrets.token_hex(12)


def _start(module: str, service: str, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{service} exited with {proc.returncode}; log: {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service} not ready; log: {log}")


@pytest.fixture(scope="module")
def platform(pg_cluster: PgCluster, rabbitmq: RabbitMQ, haproxy: HAProxy, runtime_tmp: Path) -> Iterator[str]:
    """The four services behind the ingress; yields the ingress URL. Stopped by PID afterwards."""
    started: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    accounts_port = free_port()
    plan = [
        ("accounts", "accounts-e2e", "bank", accounts_port),
        ("transactions", "transactions-e2e", "bank", free_port()),
        ("partners", "partners-e2e-0", "cashback", free_port()),
        ("partners", "partners-e2e-1", "cashback", free_port()),
        ("cashback", "cashback-e2e", "cashback", free_port()),
    ]
    try:
        for service, name, database, port in plan:
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWBANK_")}
            env.update(
                NEWBANK_SERVICE=service,
                NEWBANK_INSTANCE_ID=name,
                NEWBANK_DATABASE_URL=pg_cluster.multi_host_dsn(database),
                NEWBANK_AMQP_URL=rabbitmq.amqp_url,
                NEWBANK_ADMIN_TOKEN=ADMIN_TOKEN,
                NEWBANK_ACCOUNTS_INTERNAL_URL=f"http://127.0.0.1:{accounts_port}",
                NEWBANK_LOG_LEVEL="WARNING",
            )
            proc = _start(f"newbank.{service}.main:app", name, port, runtime_tmp / f"{name}.log", env)
            started.append((service, name, proc))
            haproxy.add_server(service, name, port)
        yield haproxy.url
    finally:
        for service, name, proc in reversed(started):
            try:
                haproxy.remove_server(service, name, drain_timeout_s=5)
            except Exception:
                pass
            stop_pid(proc.pid, timeout_s=10)


@pytest_asyncio.fixture
async def api(platform: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform, timeout=10) as client:
        yield client


async def test_payment_refund_redemption_through_the_ingress(api: httpx.AsyncClient) -> None:
    await cashback_story(api, ADMIN_TOKEN)


async def test_payment_to_cashback_credited_p99_through_the_ingress(
    api: httpx.AsyncClient, pg_cluster: PgCluster
) -> None:
    """Payments through the ingress at a steady pace; for each, the time from the payment's created_at
    (bank database) to its cashback entry (cashback database: credited, balance risen). Both clocks
    are this machine's. Prints p50/p95/p99; API.md says "normally within a second"."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    customer = (await api.post("/api/v1/customers", json={"name": "Latency", "country": "DE"}, headers=admin)).json()
    account = (
        await api.post("/api/v1/accounts", json={"customer_id": customer["id"], "currency": "EUR"}, headers=admin)
    ).json()
    deposit = await api.post(
        f"/api/v1/accounts/{account['id']}/deposits",
        json={"amount": 10_000_000, "currency": "EUR"},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201, deposit.text
    merchant = (
        await api.post(
            "/api/v1/merchants",
            json={"name": "Latency Shop", "country": "DE", "currency": "EUR"},
            headers={"X-Forwarded-For": f"10.8.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"},
        )
    ).json()
    for _ in range(100):
        offer = await api.put(
            f"/api/v1/partners/{merchant['id']}/offer",
            json={"rate_bps": 100},
            headers={"Authorization": f"Bearer {merchant['api_key']}"},
        )
        if offer.status_code == 200:
            break
        await asyncio.sleep(0.05)  # merchant.registered still on its way
    assert offer.status_code == 200, offer.text

    payment_ids = []
    for i in range(150):
        response = await api.post(
            "/api/v1/payments",
            json={"account_id": account["id"], "amount": 1_000 + i, "currency": "EUR"},
            headers={"Authorization": f"Bearer {merchant['api_key']}", "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        payment_ids.append(uuid.UUID(response.json()["id"]))
        await asyncio.sleep(0.05)

    conn = await asyncpg.connect(pg_cluster.multi_host_dsn("cashback"))
    try:
        for _ in range(200):
            rows = await conn.fetch(
                "SELECT extract(epoch FROM created_at - payment_created_at) AS seconds FROM cashback_entry"
                " WHERE payment_id = ANY($1::uuid[]) AND status = 'credited'",
                payment_ids,
            )
            if len(rows) == len(payment_ids):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert len(rows) == len(payment_ids)
    latencies = sorted(float(r["seconds"]) for r in rows)
    p50, p95, p99 = (latencies[int(len(latencies) * q) - 1] for q in (0.5, 0.95, 0.99))
    print(
        f"\npayment created -> cashback credited, {len(latencies)} payments through the ingress at ~15/s: "
        f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        f" (mean {statistics.mean(latencies) * 1000:.0f} ms)"
    )
    assert p99 < 1.0
