"""A short measured run of ``loadtest/bench_payments.py`` through one transaction-service instance.

Marked slow; run with ``pytest tests/integration/bank/test_bench_payments.py -s`` to see the figures.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from conftest import BankServices

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).parents[3] / "loadtest" / "bench_payments.py"


async def test_payments_per_second_through_one_instance(bank_services: BankServices) -> None:
    spec = importlib.util.spec_from_file_location("bench_payments", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    instance = bank_services.transactions[0]
    assert instance.process is not None
    result = await bench.run_benchmark(
        bank_services.accounts.url,
        instance.url,
        bank_services.admin_token,
        payments=int(os.environ.get("BENCH_PAYMENTS", "3000")),
        concurrency=50,
        merchants=int(os.environ.get("BENCH_MERCHANTS", "10")),
        service_pid=instance.process.pid,
    )
    print("\n" + result.summary())
    assert set(result.statuses) == {201}
