"""Exactly once when a consumer dies between its database commit and its ack: the broker delivers the
message again (to another instance) and the inbox makes the redelivery change nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from bank_events import cashback_events, entry_row, open_account, payment_completed, register_merchant, set_offer
from cashback_harness import ADMIN, Env, eventually, running, service_settings

from newbank.cashback.main import build_app as build_cashback

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

QUEUE = "cashback.payment-events"


async def _depth(env: Env) -> int:
    depths = await asyncio.to_thread(env.rabbitmq.queue_depths)
    return depths.get(QUEUE, -1)


async def test_sigkill_between_commit_and_ack_credits_once(env: Env, partners: httpx.AsyncClient) -> None:
    customer = await open_account(env)
    merchant = await register_merchant(env, partners)
    await set_offer(partners, merchant, 200)
    payment = payment_completed(customer, merchant, 50_000)

    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("crash_consumer.py")),
        env.dsn,
        env.amqp_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert crashing.stdout is not None
        line = await asyncio.wait_for(crashing.stdout.readline(), timeout=30)
        assert line.strip() == b"consuming", line
        event_id = await env.bus.publish("payment.completed", payment)
        returncode = await asyncio.wait_for(crashing.wait(), timeout=30)
        assert returncode == -9  # killed by SIGKILL after the commit
    finally:
        if crashing.returncode is None:
            crashing.kill()
            await crashing.wait()

    # The effect is durable, the message is not acked: it is back in the queue.
    row = await entry_row(env, payment["payment_id"])
    assert row is not None and row["earned"] == 1_000
    assert await env.pool.fetchval("SELECT count(*) FROM inbox_event WHERE event_id = $1", event_id) == 1

    async def requeued() -> bool:
        return await _depth(env) == 1

    await eventually(requeued, timeout_s=15, every_s=0.5)

    # Another instance takes the redelivery: the inbox says it was applied, nothing changes.
    async with running(build_cashback(service_settings("cashback", env))) as cashback:

        async def drained() -> bool:
            return await _depth(env) == 0

        await eventually(drained, timeout_s=15, every_s=0.5)
        body = (await cashback.get(f"/api/v1/cashback/accounts/{customer.account_id}", headers=ADMIN)).json()
        assert body["balance"] == 1_000
        assert [e["amount"] for e in body["entries"]] == [1_000]
    events = await cashback_events(env, payment["payment_id"])
    assert [(e["type"], e["entry_version"]) for e in events] == [("cashback.credited", 1)]
