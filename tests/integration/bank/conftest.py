"""The Bank's services as real processes (uvicorn) on the session's PostgreSQL pair and RabbitMQ.

One accounts instance and two transaction-service instances, so that concurrency and idempotency
are tested across instances as in production. Each is started once per session and stopped by PID.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from bank_api import Bank, BankServices, ServiceProcess, service_env

from newbank.runtime import PgCluster, RabbitMQ, free_port


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
