"""Which outbox events go out again after the broker came back without its data (real PostgreSQL).

The services sharing a database lose their broker connections at different moments of a graceful
stop; the one that re-drives for all of them may have gone first. Everything published from the
margin before its disconnect until now goes out again — not only up to its own disconnect (CI found a
cashback status event, published by a service still connected, that nothing re-sent).
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from cashback_harness import Env

from newbank.database import Database, create_pool
from newbank.messaging.outbox import OutboxRelay, add_event

pytestmark = [pytest.mark.integration]


async def _event_published_at(conn: asyncpg.Connection, at: float) -> str:
    event_id = await add_event(conn, "test.redrive", "test", {"n": str(uuid.uuid4())})
    await conn.execute("UPDATE outbox_event SET published_at = to_timestamp($2) WHERE id::text = $1", event_id, at)
    return event_id


async def test_redrive_covers_the_margin_before_the_disconnect_and_everything_after(cashback_env: Env) -> None:
    now = time.time()
    disconnected_at, margin = now - 20.0, 30.0
    pool = await create_pool(cashback_env.dsn, min_size=1, max_size=1, command_timeout=10)  # with the jsonb codec
    async with pool.acquire() as conn:
        tx = conn.transaction()  # rolled back: other modules' relays on this database never see these rows
        await tx.start()
        try:
            long_before = await _event_published_at(conn, disconnected_at - margin - 60)
            in_margin = await _event_published_at(conn, disconnected_at - 5)
            # Published by another service of this database, still connected after this one lost the broker.
            after_disconnect = await _event_published_at(conn, disconnected_at + 4)

            relay = OutboxRelay(Database(conn), broker=None)  # type: ignore[arg-type] - republish needs no broker
            count = await relay.republish(disconnected_at - margin)

            rows = await conn.fetch(
                "SELECT id::text, published_at IS NULL AS pending FROM outbox_event WHERE id::text = ANY($1)",
                [long_before, in_margin, after_disconnect],
            )
        finally:
            await tx.rollback()
    await pool.close()
    assert {r["id"]: r["pending"] for r in rows} == {long_before: False, in_margin: True, after_disconnect: True}
    assert count >= 2
