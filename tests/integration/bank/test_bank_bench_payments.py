"""A short measured run of ``loadtest/bench_payments.py`` through one transaction-service instance.

The instance is started for this test alone (no other test's traffic), with ``BENCH_POOL`` database
connections (default 20). Marked slow; run with ``-s`` to see the figures::

    pytest tests/integration/bank/test_bank_bench_payments.py -s
    BENCH_PAYMENTS=5000 BENCH_POOL=40 pytest tests/integration/bank/test_bank_bench_payments.py -s
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from bank_api import BankServices, ServiceProcess, service_env

from newbank.runtime import PgCluster, RabbitMQ, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).parents[3] / "loadtest" / "bench_payments.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_payments", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    return bench


async def test_payments_per_second_through_one_instance(
    bank_services: BankServices, pg_cluster: PgCluster, rabbitmq: RabbitMQ, runtime_tmp: Path
) -> None:
    bench = load_bench()
    instance = ServiceProcess("transactions-bench", free_port(), runtime_tmp / "transactions-bench.log")
    env = service_env("transactions", "transactions-bench", pg_cluster, rabbitmq, bank_services.accounts.url)
    env["NEWBANK_DB_POOL_MAX"] = os.environ.get("BENCH_POOL", "20")
    instance.start("newbank.transactions.main:app", env)
    try:
        assert instance.process is not None
        result = await bench.run_benchmark(
            bank_services.accounts.url,
            instance.url,
            bank_services.admin_token,
            payments=int(os.environ.get("BENCH_PAYMENTS", "3000")),
            concurrency=int(os.environ.get("BENCH_CONCURRENCY", "50")),
            merchants=int(os.environ.get("BENCH_MERCHANTS", "10")),
            service_pid=instance.process.pid,
        )
    finally:
        instance.stop()
    print(f"\npool {env['NEWBANK_DB_POOL_MAX']} connections, load average {os.getloadavg()[0]:.1f}")
    print(result.summary())
    assert set(result.statuses) == {201}
