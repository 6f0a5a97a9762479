"""The Bank's services as processes, and its API as the integration tests drive it.

Imported by name (the test folders are not packages), hence a name no other folder uses.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson

from newbank.messaging.topology import EVENTS_EXCHANGE
from newbank.runtime import PgCluster, RabbitMQ, stop_pid

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, module: str, env: dict[str, str], timeout_s: float = 90) -> None:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    module,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log: {self.log_file}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout_s}s; log: {self.log_file}")

    def stop(self) -> None:
        if self.process is not None:
            stop_pid(self.process.pid, timeout_s=10)
            self.process = None


@dataclass
class BankServices:
    accounts: ServiceProcess
    transactions: list[ServiceProcess]
    database_url: str
    admin_token: str = ADMIN_TOKEN
    processes: list[ServiceProcess] = field(default_factory=list)


def service_env(
    service: str, instance: str, pg_cluster: PgCluster, rabbitmq: RabbitMQ, accounts_url: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWBANK_")}
    env.update(
        NEWBANK_SERVICE=service,
        NEWBANK_INSTANCE_ID=instance,
        NEWBANK_DATABASE_URL=pg_cluster.multi_host_dsn("bank"),
        NEWBANK_DATABASE_REPLICA_URL=pg_cluster.replica_multi_host_dsn("bank"),
        NEWBANK_AMQP_URL=rabbitmq.amqp_url,
        NEWBANK_ADMIN_TOKEN=ADMIN_TOKEN,
        NEWBANK_ACCOUNTS_INTERNAL_URL=accounts_url,
        NEWBANK_ONBOARDING_RATE_LIMIT_PER_MINUTE="20",
        NEWBANK_DB_POOL_MAX="20",
        NEWBANK_LOG_LEVEL="WARNING",
    )
    return env


def problem(response: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    """Asserts a problem+json answer with this status (and type slug) and returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    if type_ is not None:
        assert body["type"] == type_, body
    return body


def client_address() -> str:
    """A made-up client address per onboarding, as HAProxy would forward it (the limit is per address)."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


class Bank:
    """The Bank API as a test drives it: admin set-up helpers plus raw clients for each service."""

    def __init__(self, services: BankServices, accounts: httpx.AsyncClient, transactions: list[httpx.AsyncClient]):
        self.services = services
        self.accounts = accounts
        self.transactions = transactions
        self.admin = {"Authorization": f"Bearer {services.admin_token}"}

    @staticmethod
    def auth(key: str, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def customer(self, name: str = "Ada Lovelace", country: str = "GB") -> dict[str, Any]:
        response = await self.accounts.post(
            "/api/v1/customers", json={"name": name, "country": country}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def account(self, customer_id: str, currency: str = "EUR", deposit: int = 0) -> dict[str, Any]:
        response = await self.accounts.post(
            "/api/v1/accounts", json={"customer_id": customer_id, "currency": currency}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        account = response.json()
        if deposit:
            await self.deposit(account["id"], deposit, currency)
            account["balance"] = deposit
        return account

    async def funded_account(self, currency: str = "EUR", deposit: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
        customer = await self.customer()
        return customer, await self.account(customer["id"], currency, deposit)

    async def deposit(self, account_id: str, amount: int, currency: str = "EUR") -> dict[str, Any]:
        response = await self.accounts.post(
            f"/api/v1/accounts/{account_id}/deposits",
            json={"amount": amount, "currency": currency},
            headers={**self.admin, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def merchant(self, currency: str = "EUR", name: str = "Corner Shop", country: str = "DE") -> dict[str, Any]:
        response = await self.accounts.post(
            "/api/v1/merchants",
            json={"name": name, "country": country, "currency": currency, "category": "books"},
            headers={"X-Forwarded-For": client_address()},
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def set_rate(self, base: str, quote: str, rate: str) -> None:
        response = await self.accounts.put(f"/api/v1/fx-rates/{base}/{quote}", json={"rate": rate}, headers=self.admin)
        assert response.status_code == 200, response.text

    async def balance(self, account_id: str) -> int:
        response = await self.accounts.get(f"/api/v1/accounts/{account_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()["balance"]

    async def pay(
        self,
        merchant: dict[str, Any],
        account_id: str,
        amount: int,
        currency: str | None = None,
        key: str | None = None,
        instance: int = 0,
        **extra: Any,
    ) -> httpx.Response:
        body = {"account_id": account_id, "amount": amount, "currency": currency or merchant["currency"], **extra}
        return await self.transactions[instance].post(
            "/api/v1/payments", json=body, headers=self.auth(merchant["api_key"], key or str(uuid.uuid4()))
        )

    async def refund(
        self, merchant: dict[str, Any], payment_id: str, amount: int, key: str | None = None, instance: int = 0
    ) -> httpx.Response:
        return await self.transactions[instance].post(
            f"/api/v1/payments/{payment_id}/refunds",
            json={"amount": amount},
            headers=self.auth(merchant["api_key"], key or str(uuid.uuid4())),
        )


async def publish(amqp_url: str, event_type: str, data: dict[str, Any], event_id: uuid.UUID | None = None) -> str:
    """Publishes an event as another service's outbox relay would."""
    event_id = event_id or uuid.uuid4()
    envelope = {
        "id": str(event_id),
        "type": event_type,
        "version": 1,
        "source": "cashback",
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                orjson.dumps(envelope),
                message_id=str(event_id),
                type=event_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event_type,
        )
    finally:
        await connection.close()
    return str(event_id)


async def eventually(check, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {check.__name__}")
        await asyncio.sleep(interval_s)
