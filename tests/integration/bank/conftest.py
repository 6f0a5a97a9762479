"""The Bank's services as real processes (uvicorn) on the session's PostgreSQL pair and RabbitMQ.

One accounts instance and two transaction-service instances, so that concurrency and idempotency
are tested across instances as in production. Each is started once per session and stopped by PID.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from bank_api import Bank

from newbank.runtime import PgCluster, RabbitMQ, free_port, stop_pid

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


@pytest.fixture(scope="session")
def bank_services(pg_cluster: PgCluster, rabbitmq: RabbitMQ, runtime_tmp: Path) -> Iterator[BankServices]:
    accounts = ServiceProcess("accounts", free_port(), runtime_tmp / "accounts.log")
    transactions = [
        ServiceProcess(f"transactions-{i}", free_port(), runtime_tmp / f"transactions-{i}.log") for i in range(2)
    ]
    started: list[ServiceProcess] = []
    try:
        accounts.start("newbank.accounts.main:app", service_env("accounts", "accounts-0", pg_cluster, rabbitmq, ""))
        started.append(accounts)
        for i, instance in enumerate(transactions):
            env = service_env("transactions", f"transactions-{i}", pg_cluster, rabbitmq, accounts.url)
            instance.start("newbank.transactions.main:app", env)
            started.append(instance)
        yield BankServices(accounts, transactions, pg_cluster.multi_host_dsn("bank"), processes=started)
    finally:
        for process in reversed(started or [accounts, *transactions]):
            process.stop()


@pytest.fixture(scope="session")
async def bank(bank_services: BankServices) -> AsyncIterator[Bank]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(base_url=bank_services.accounts.url, timeout=timeout) as accounts:
        clients = [
            httpx.AsyncClient(base_url=t.url, timeout=timeout, limits=limits) for t in bank_services.transactions
        ]
        try:
            yield Bank(bank_services, accounts, clients)
        finally:
            for client in clients:
                await client.aclose()
