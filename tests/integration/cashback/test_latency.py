"""How long from a payment.completed on the broker to the cashback.credited event on the broker (what
the transaction service waits for to show ``cashback.status: credited``) on an idle platform.

Prints p50/p95/p99 over a short steady run; API.md says "normally within a second".

    .venv/bin/pytest -s tests/integration/cashback/test_latency.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest
from bank_events import open_account, payment_completed, register_merchant, set_offer, wait_balance
from cashback_harness import Env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYMENTS = 200
RATE_PER_S = 25


async def test_payment_to_cashback_credited_p99_under_1s(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    credited = await env.bus.listen("cashback.credited")
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 100)
    published: dict[str, float] = {}
    latencies: list[float] = []

    async def collect() -> None:
        while len(latencies) < PAYMENTS:
            event = await credited.get()
            sent = published.get(event["data"]["payment_id"])
            if sent is not None:
                latencies.append(time.perf_counter() - sent)

    collector = asyncio.create_task(collect())
    for i in range(PAYMENTS):
        payment = payment_completed(customer, merchant, 10_000 + i)
        published[payment["payment_id"]] = time.perf_counter()
        await env.bus.publish("payment.completed", payment)
        await asyncio.sleep(1 / RATE_PER_S)
    await asyncio.wait_for(collector, timeout=30)
    await wait_balance(cashback, customer, sum((10_000 + i) // 100 for i in range(PAYMENTS)))

    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(PAYMENTS * 0.95) - 1]
    p99 = latencies[int(PAYMENTS * 0.99) - 1]
    print(
        f"\npayment.completed -> cashback.credited, {PAYMENTS} payments at {RATE_PER_S}/s: "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    assert p99 < 1.0


BACKLOG = 1_000


async def test_backlog_drain_rate_of_one_instance(
    env: Env, partners: httpx.AsyncClient, cashback: httpx.AsyncClient
) -> None:
    """A backlog of payment events (as after a broker outage) drained by one cashback instance: prints
    events per second, the figure the operator's scaling works with. Every payment credited once."""
    customers = [await open_account(env) for _ in range(20)]  # spread over accounts, as in real traffic
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 150)
    payments = [payment_completed(customers[i % 20], merchant, 5_000 + i) for i in range(BACKLOG)]
    await asyncio.gather(*(env.bus.publish("payment.completed", p) for p in payments))
    started = time.perf_counter()
    for i, customer in enumerate(customers):
        expected = sum((5_000 + j) * 150 // 10_000 for j in range(i, BACKLOG, 20))
        await wait_balance(cashback, customer, expected, timeout_s=120)
    elapsed = time.perf_counter() - started
    print(f"\nbacklog of {BACKLOG} payment events drained by one cashback instance: {BACKLOG / elapsed:.0f} events/s")
