"""Inbox rows are forgotten after their retention, only those of the pruning service's consumers."""

from __future__ import annotations

import uuid

import pytest
from cashback_harness import Env

from newbank.database import Database
from newbank.messaging.inbox_pruning import prune_inbox

pytestmark = [pytest.mark.integration]


async def test_old_rows_of_own_consumers_go_the_rest_stay(env: Env) -> None:
    ours, theirs = f"test-prune:{uuid.uuid4().hex[:8]}", f"test-other:{uuid.uuid4().hex[:8]}"
    rows = {
        (ours, "50 hours"): [uuid.uuid4() for _ in range(7)],
        (ours, "1 hour"): [uuid.uuid4() for _ in range(3)],
        (theirs, "50 hours"): [uuid.uuid4() for _ in range(2)],
    }
    for (consumer, age), ids in rows.items():
        await env.pool.execute(
            "INSERT INTO inbox_event (consumer, event_id, event_type, processed_at)"
            " SELECT $1, id, 'test.event', now() - $3::text::interval FROM unnest($2::uuid[]) AS id",
            consumer,
            ids,
            age,
        )
    db = await Database.connect(env.dsn, min_size=1, max_size=1)
    try:
        deleted = await prune_inbox(db, [ours], retention_h=48, batch=3)  # several batches
    finally:
        await db.close()

    assert deleted == 7
    left = await env.pool.fetch(
        "SELECT consumer, event_id FROM inbox_event WHERE consumer = ANY($1::text[])", [ours, theirs]
    )
    assert {(r["consumer"], r["event_id"]) for r in left} == {
        *((ours, i) for i in rows[(ours, "1 hour")]),
        *((theirs, i) for i in rows[(theirs, "50 hours")]),
    }
    await env.pool.execute("DELETE FROM inbox_event WHERE consumer = ANY($1::text[])", [ours, theirs])


async def test_retention_never_below_two_hours(env: Env) -> None:
    consumer = f"test-prune:{uuid.uuid4().hex[:8]}"
    event_id = uuid.uuid4()
    await env.pool.execute(
        "INSERT INTO inbox_event (consumer, event_id, event_type, processed_at)"
        " VALUES ($1, $2, 't', now() - '90 minutes'::interval)",
        consumer,
        event_id,
    )
    db = await Database.connect(env.dsn, min_size=1, max_size=1)
    try:
        assert await prune_inbox(db, [consumer], retention_h=0.01) == 0
    finally:
        await db.close()
    await env.pool.execute("DELETE FROM inbox_event WHERE consumer = $1", consumer)
