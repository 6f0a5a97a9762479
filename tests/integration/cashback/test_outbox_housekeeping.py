"""The outbox keeps published rows for an hour (a broker that lost its data gets them again), then
deletes them, 5,000 at a time, walking the primary key from the oldest: real PostgreSQL."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from cashback_harness import Env

from newbank.database import create_pool
from newbank.messaging.outbox import add_event, prune_published

pytestmark = [pytest.mark.integration]
HOUR = 3600.0


async def _event(conn: asyncpg.Connection, published_ago_s: float | None) -> str:
    event_id = await add_event(conn, "test.housekeeping", "test", {"n": str(uuid.uuid4())})
    if published_ago_s is not None:
        await conn.execute(
            "UPDATE outbox_event SET published_at = to_timestamp($2) WHERE id::text = $1",
            event_id,
            time.time() - published_ago_s,
        )
    return event_id


async def test_only_rows_published_before_the_retention_go(cashback_env: Env) -> None:
    pool = await create_pool(cashback_env.dsn, min_size=1, max_size=1, command_timeout=10)
    async with pool.acquire() as conn:
        tx = conn.transaction()  # rolled back: the table is emptied for the test only
        await tx.start()
        try:
            await conn.execute("DELETE FROM outbox_event")
            old = await _event(conn, 2 * HOUR)
            pending = await _event(conn, None)
            recent = await _event(conn, 600)
            old_after_recent = await _event(conn, 2 * HOUR)
            deleted = await prune_published(conn, HOUR)
            left = {r["id"] for r in await conn.fetch("SELECT id::text FROM outbox_event")}
        finally:
            await tx.rollback()
    await pool.close()
    assert deleted == 2
    assert left == {pending, recent}
    assert old not in left and old_after_recent not in left


async def test_one_run_deletes_at_most_5000(cashback_env: Env) -> None:
    pool = await create_pool(cashback_env.dsn, min_size=1, max_size=1, command_timeout=10)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("DELETE FROM outbox_event")
            await conn.execute(
                "INSERT INTO outbox_event (id, event_type, routing_key, envelope, published_at)"
                " SELECT gen_random_uuid(), 'test.housekeeping', 'test.housekeeping', '{}'::jsonb,"
                " now() - interval '2 hours' FROM generate_series(1, 5003)"
            )
            first = await prune_published(conn, HOUR)
            second = await prune_published(conn, HOUR)
        finally:
            await tx.rollback()
    await pool.close()
    assert (first, second) == (5000, 3)
