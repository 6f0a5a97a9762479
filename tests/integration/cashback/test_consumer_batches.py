"""The inbox consumer applies what waits in its queue in batches: many events in one transaction,
each applied exactly once (repeats inside a batch included), and a poison event in a batch costs the
others nothing (the batch is applied again one by one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from cashback_harness import Env, eventually

from newbank.database import Database
from newbank.messaging.broker import Broker
from newbank.messaging.consumer import ConsumerSpec, InboxConsumer, PermanentEventError
from newbank.messaging.events import Event
from newbank.messaging.topology import QueueSpec, Topology

pytestmark = [pytest.mark.integration]

EFFECTS = "test_consumer_batch_effect"


async def record_effect(conn: asyncpg.Connection, event: Event) -> None:
    if event.data.get("poison"):
        raise PermanentEventError("this event can never be applied")
    await conn.execute(f"INSERT INTO {EFFECTS} (event_id) VALUES ($1)", event.id)


@dataclass
class Lane:
    """A queue of its own with its topology, and a consumer that starts only when asked."""

    event_type: str
    spec: ConsumerSpec
    broker: Broker
    db: Database


@pytest_asyncio.fixture
async def lane(env: Env) -> AsyncIterator[Lane]:
    event_type = f"test.batch.{uuid.uuid4().hex[:10]}"
    queue = QueueSpec(name=event_type, routing_keys=(event_type,), consumer_service="test")
    await env.pool.execute(
        f"CREATE TABLE IF NOT EXISTS {EFFECTS} (event_id uuid NOT NULL, txid bigint NOT NULL DEFAULT txid_current())"
    )
    broker = Broker(env.amqp_url, Topology(queues=(queue,)))
    runner = asyncio.create_task(broker.run())
    await asyncio.wait_for(broker.connected.wait(), 20)  # the queue, its DLQ and retry queue exist now
    db = await Database.connect(env.dsn, min_size=1, max_size=2)
    try:
        yield Lane(event_type, ConsumerSpec(queue=queue, handlers={event_type: record_effect}), broker, db)
    finally:
        await broker.close()
        channel = await env.bus.connection.channel()
        for name in (queue.name, queue.dead_letter_queue, queue.retry_queue):
            await channel.queue_delete(name)
        await channel.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await db.close()


async def _effects(env: Env, event_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await env.pool.fetch(
        f"SELECT event_id, count(*) AS times, min(txid) AS txid FROM {EFFECTS}"
        " WHERE event_id = ANY($1::uuid[]) GROUP BY event_id",
        event_ids,
    )


async def test_waiting_events_are_applied_in_few_transactions_each_once(env: Env, lane: Lane) -> None:
    event_ids = [uuid.uuid4() for _ in range(30)]
    # Five of them twice under the same id (a redelivered or replayed event), all waiting in the queue.
    for event_id in [*event_ids, *event_ids[:5]]:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)

    consumer = InboxConsumer(lane.spec, lane.db, lane.broker, consumer_name="test:batches", prefetch=64, batch_size=64)
    assert lane.broker.connection is not None
    await consumer.start(lane.broker.connection)

    rows = await eventually(lambda: _full(env, event_ids), timeout_s=20)
    assert all(row["times"] == 1 for row in rows), [dict(row) for row in rows if row["times"] != 1]
    transactions = {row["txid"] for row in rows}
    assert len(transactions) <= 5, f"30 waiting events took {len(transactions)} transactions"
    inbox = await env.pool.fetchval(
        "SELECT count(*) FROM inbox_event WHERE consumer = 'test:batches' AND event_id = ANY($1::uuid[])", event_ids
    )
    assert inbox == 30
    # Every message was acknowledged: once the consumer's connection is gone, nothing is back in the queue.
    await lane.broker.close()
    await asyncio.sleep(0.5)
    assert await _messages_in(env, lane.spec.queue.name) == 0


async def test_a_poison_event_in_a_batch_costs_the_others_nothing(env: Env, lane: Lane) -> None:
    good = [uuid.uuid4() for _ in range(20)]
    poison = uuid.uuid4()
    for event_id in good[:10]:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)
    await env.bus.publish(lane.event_type, {"poison": True}, event_id=poison)
    for event_id in good[10:]:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)

    consumer = InboxConsumer(
        lane.spec, lane.db, lane.broker, consumer_name="test:batches", max_retries=0, retry_base_delay_ms=10
    )
    assert lane.broker.connection is not None
    await consumer.start(lane.broker.connection)

    rows = await eventually(lambda: _full(env, good), timeout_s=20)
    assert all(row["times"] == 1 for row in rows)
    assert await _effects(env, [poison]) == []
    assert await env.pool.fetchval("SELECT count(*) FROM inbox_event WHERE event_id = $1", poison) == 0

    async def dead_lettered() -> bool | None:
        return await _messages_in(env, lane.spec.queue.dead_letter_queue) == 1 or None

    await eventually(dead_lettered, timeout_s=10, every_s=0.1)


def _recording_runs(runs: list[int]) -> Callable[[asyncpg.Connection, list[Event]], Awaitable[None]]:
    """A batch handler that records each run's length and refuses a run holding a poison event."""

    async def record_run(conn: asyncpg.Connection, events: list[Event]) -> None:
        runs.append(len(events))
        if any(event.data.get("poison") for event in events):
            raise PermanentEventError("the run holds an event the batch handler refuses")
        for event in events:
            await conn.execute(f"INSERT INTO {EFFECTS} (event_id) VALUES ($1)", event.id)

    return record_run


async def _consume_with_runs(lane: Lane, runs: list[int], **options: int) -> None:
    spec = ConsumerSpec(
        queue=lane.spec.queue,
        handlers={lane.event_type: record_effect},
        batch_handlers={lane.event_type: _recording_runs(runs)},
    )
    consumer = InboxConsumer(spec, lane.db, lane.broker, consumer_name="test:runs", **options)
    assert lane.broker.connection is not None
    await consumer.start(lane.broker.connection)


async def test_runs_of_a_type_go_to_its_batch_handler(env: Env, lane: Lane) -> None:
    runs: list[int] = []
    good = [uuid.uuid4() for _ in range(24)]
    for event_id in good:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)
    await _consume_with_runs(lane, runs, prefetch=64, batch_size=64)
    rows = await eventually(lambda: _full(env, good), timeout_s=20)
    assert all(row["times"] == 1 for row in rows)
    # Runs, not one call per event (a message that arrives alone is a batch of one: the single handler).
    assert len(runs) <= 5 and sum(runs) >= len(good) - 5, runs


async def test_a_run_its_batch_handler_refuses_is_applied_one_by_one(env: Env, lane: Lane) -> None:
    """The batch is applied again one event at a time, by the single handler: the good events of it
    are applied, only the poison one is retried and dead-lettered."""
    runs: list[int] = []
    good = [uuid.uuid4() for _ in range(10)]
    for event_id in good[:5]:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)
    await env.bus.publish(lane.event_type, {"poison": True}, event_id=uuid.uuid4())
    for event_id in good[5:]:
        await env.bus.publish(lane.event_type, {"n": 1}, event_id=event_id)
    await _consume_with_runs(lane, runs, max_retries=0, retry_base_delay_ms=10)
    rows = await eventually(lambda: _full(env, good), timeout_s=20)
    assert all(row["times"] == 1 for row in rows)
    assert max(runs) > 1, runs  # the poison came in a run, which the batch handler refused

    async def dead_lettered() -> bool | None:
        return await _messages_in(env, lane.spec.queue.dead_letter_queue) == 1 or None

    await eventually(dead_lettered, timeout_s=10, every_s=0.1)


async def _full(env: Env, event_ids: list[uuid.UUID]) -> list[asyncpg.Record] | None:
    rows = await _effects(env, event_ids)
    return rows if len(rows) == len(event_ids) else None


async def _messages_in(env: Env, name: str) -> int:
    """Messages ready in a queue, as the broker counts them (a passive declare)."""
    channel = await env.bus.connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        assert isinstance(queue, aio_pika.abc.AbstractQueue)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()
