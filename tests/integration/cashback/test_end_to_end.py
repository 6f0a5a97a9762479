"""The whole cashback story through the HAProxy ingress, with every service a real uvicorn process:
accounts, transactions, two partners instances and cashback, on the session's PostgreSQL pair and
RabbitMQ. Nothing is simulated: merchant onboarding, payments, refunds and redemptions go through the
public API, the events through the outboxes, the broker and the inboxes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cashback_harness import eventually
from newbank.runtime import HAProxy, PgCluster, RabbitMQ, free_port, stop_pid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_TOKEN = "e2e-admin-" + secrets.token_hex(12)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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


def key(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}


async def _created(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


async def test_payment_refund_redemption_through_the_ingress(api: httpx.AsyncClient) -> None:
    customer = await _created(await api.post("/api/v1/customers", json={"name": "Zoë", "country": "NL"}, headers=ADMIN))
    account = await _created(
        await api.post("/api/v1/accounts", json={"customer_id": customer["id"], "currency": "EUR"}, headers=ADMIN)
    )
    await _created(
        await api.post(f"/api/v1/accounts/{account['id']}/deposits", json={"amount": 100_000, "currency": "EUR"},
                       headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())})
    )  # fmt: skip
    merchant = await _created(
        await api.post(
            "/api/v1/merchants",
            json={"name": "Ōsaka Books", "country": "DE", "currency": "EUR", "category": "books"},
            headers={"X-Forwarded-For": f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"},
        )
    )
    customer_auth = {"Authorization": f"Bearer {customer['api_key']}"}

    # merchant.registered made it a partner store on both partners instances.
    async def partner() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/partners/{merchant['id']}")
        return response.json() if response.status_code == 200 else None

    store = await eventually(partner, timeout_s=5)
    assert (store["name"], store["offer"]) == ("Ōsaka Books", None)
    offer = await api.put(
        f"/api/v1/partners/{merchant['id']}/offer", json={"rate_bps": 250}, headers=key(merchant["api_key"])
    )
    assert offer.status_code == 200, offer.text

    # The account is known to cashback (account.opened) before any cashback.
    async def cashback_account() -> dict[str, Any] | None:
        response = await api.get(f"/api/v1/cashback/accounts/{account['id']}", headers=customer_auth)
        return response.json() if response.status_code == 200 else None

    assert (await eventually(cashback_account, timeout_s=5))["balance"] == 0

    async def pay(amount: int) -> tuple[dict[str, Any], float]:
        body = {"account_id": account["id"], "amount": amount, "currency": "EUR"}
        paid_at = time.monotonic()
        return await _created(await api.post("/api/v1/payments", json=body, headers=key(merchant["api_key"]))), paid_at

    async def cashback_of(payment_id: str, status: str, amount: int | None) -> float:
        async def shown() -> bool:
            response = await api.get(f"/api/v1/payments/{payment_id}", headers=customer_auth)
            return response.json()["cashback"] == {
                "status": status,
                **({"amount": amount} if amount is not None else {}),
            }

        await eventually(shown, timeout_s=5, every_s=0.01)
        return time.monotonic()

    first, paid_at = await pay(12_345)
    assert first["cashback"] == {"status": "pending"}
    credited_after = await cashback_of(first["id"], "credited", 308) - paid_at
    print(f"\npayment -> cashback.status credited, through the ingress: {credited_after * 1000:.0f} ms")
    assert credited_after < 2.0  # "within 1 s on an idle platform"; this machine is shared
    assert (await cashback_account())["balance"] == 308

    # A partial refund reverses the same share; a full refund of another payment reverses all of it.
    await _created(
        await api.post(
            f"/api/v1/payments/{first['id']}/refunds", json={"amount": 6_000}, headers=key(merchant["api_key"])
        )
    )
    await cashback_of(first["id"], "credited", 308 - 308 * 6_000 // 12_345)
    second, _ = await pay(10_000)
    await cashback_of(second["id"], "credited", 250)
    await _created(
        await api.post(
            f"/api/v1/payments/{second['id']}/refunds", json={"amount": 10_000}, headers=key(merchant["api_key"])
        )
    )
    await cashback_of(second["id"], "reversed", 0)
    balance = 308 - 308 * 6_000 // 12_345
    view = await cashback_account()
    assert view["balance"] == balance
    assert sorted((e["amount"], e["status"]) for e in view["entries"]) == [(0, "reversed"), (balance, "credited")]

    # Redemption: the cashback moves to the bank balance, once.
    bank_before = (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"]
    redeem_headers = key(customer["api_key"])
    path = f"/api/v1/cashback/accounts/{account['id']}/redemptions"
    redemption = await _created(await api.post(path, json={"amount": balance}, headers=redeem_headers), 202)
    replay = await api.post(path, json={"amount": balance}, headers=redeem_headers)
    assert replay.status_code == 202 and replay.json() == redemption
    refused = await api.post(path, json={"amount": 1}, headers=key(customer["api_key"]))
    assert (refused.status_code, refused.json()["type"]) == (402, "insufficient-cashback")

    async def completed() -> bool:
        response = await api.get(f"/api/v1/cashback/redemptions/{redemption['id']}", headers=customer_auth)
        return response.json()["status"] == "completed"

    await eventually(completed, timeout_s=5)
    bank_after = (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"]
    assert bank_after == bank_before + balance
    assert (await cashback_account())["balance"] == 0
    await asyncio.sleep(0.5)  # a second credit would have shown by now
    assert (await api.get(f"/api/v1/accounts/{account['id']}", headers=customer_auth)).json()["balance"] == bank_after
