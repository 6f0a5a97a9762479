"""The transactional outbox relay.

Events are rows written in the same transaction as the change that caused them (``outbox_add``). The
relay takes pending rows with ``FOR UPDATE SKIP LOCKED`` (so several instances share the work without
publishing one row twice at once), publishes them as persistent messages with publisher confirms, and
marks them published only after every confirm. A broker outage therefore loses nothing: rows wait.
Delivery is at least once; the consumers' inbox makes it exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
import asyncpg
import orjson

from newbank.database import Database
from newbank.messaging.broker import Broker
from newbank.messaging.topology import TOPOLOGY
from newbank.observability import OUTBOX_PENDING, OUTBOX_PUBLISHED

log = logging.getLogger("newbank.outbox")

# Routing keys that some durable queue is bound to: a message for them must be routed, or it is a
# failure (a queue is missing) and the row stays pending until the topology is back.
_MUST_ROUTE = frozenset(key for spec in TOPOLOGY.queues for key in spec.routing_keys)

_PENDING_SQL = """
SELECT seq, id, routing_key, envelope FROM outbox_event
 WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
"""
# Written (so WAL-logged: a commit waits for the synchronous standby only if it wrote WAL) only when
# something is pending; one row per session (migrations/common/0003).
_DURABLE_BARRIER_SQL = """
INSERT INTO replication_barrier (backend_pid, touched_at)
SELECT pg_backend_pid(), now() WHERE EXISTS (SELECT 1 FROM outbox_event WHERE published_at IS NULL)
ON CONFLICT (backend_pid) DO UPDATE SET touched_at = excluded.touched_at
"""

# The oldest rows by seq (the primary key's order), of which those published before the retention:
# no index on published_at is needed, and the scan stops after 5,000 rows. A filter on published_at
# alone scanned the whole hour of rows every 5 s in every instance (0.64 s a time at ~300 events/s).
_DELETE_PUBLISHED_SQL = """
DELETE FROM outbox_event WHERE seq IN (
    SELECT seq FROM (SELECT seq, published_at FROM outbox_event ORDER BY seq LIMIT 5000) AS oldest
     WHERE published_at < now() - make_interval(secs => $1))
"""


async def prune_published(conn: asyncpg.Connection, retention_s: float) -> int:
    """Delete up to 5,000 of the oldest rows published more than ``retention_s`` ago; how many went."""
    status = await conn.execute(_DELETE_PUBLISHED_SQL, retention_s)
    return int(status.rsplit(" ", 1)[-1])


async def add_event(conn: asyncpg.Connection, event_type: str, source: str, data: dict[str, Any]) -> str:
    """Write an event into the outbox in the caller's transaction; returns its id."""
    return str(await conn.fetchval("SELECT outbox_add($1, $2, $3)", event_type, source, data))


def _message(row: asyncpg.Record) -> aio_pika.Message:
    envelope = row["envelope"]
    return aio_pika.Message(
        body=orjson.dumps(envelope),
        message_id=str(row["id"]),
        type=envelope["type"],
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={"x-newbank-version": envelope["version"], "x-newbank-source": envelope["source"]},
    )


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        *,
        poll_interval_s: float = 0.5,
        batch_size: int = 200,
        coalesce_s: float = 0.01,
    ):
        self.db = db
        self.broker = broker
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        # After a wake-up, wait this long so that the events of concurrent requests leave in one batch:
        # a batch costs a handful of round trips whatever its size, so under load this divides the
        # relay's CPU per event (it was ~30% of a payment's CPU with one batch per payment).
        self.coalesce_s = coalesce_s
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Called after a commit that wrote events, so they leave without waiting for the next poll."""
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(self.poll_interval_s * (1 + failures), 5.0))
                woken = True
            if woken and self.coalesce_s > 0:
                await asyncio.sleep(self.coalesce_s)
            self._wake.clear()
            if not self.broker.available:
                continue
            try:
                while await self.publish_batch() == self.batch_size:
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("outbox batch not published: %r", exc)
                await self.broker.reset_publish_channel()

    async def publish_batch(self) -> int:
        async with self.db.primary.acquire() as conn:
            # Publish only what the synchronous standby has: when there is something pending, this
            # autocommit statement writes a row, so its commit waits for the standby to confirm the
            # WAL so far — the events' own commits included. A row committed only locally
            # (its sync wait cancelled on a primary that is being failed away from) would otherwise
            # go out as an event for a payment that the new primary never had (issue 7, chaos 1c).
            await conn.execute(_DURABLE_BARRIER_SQL)
            async with conn.transaction():
                return await self._publish_pending(conn)

    async def _publish_pending(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(_PENDING_SQL, self.batch_size)
        if not rows:
            return 0
        channel = await self.broker.publish_channel()
        exchange = await channel.get_exchange(TOPOLOGY.exchange, ensure=False)
        await asyncio.gather(
            *(
                exchange.publish(_message(row), row["routing_key"], mandatory=row["routing_key"] in _MUST_ROUTE)
                for row in rows
            )
        )
        await conn.execute(
            "UPDATE outbox_event SET published_at = now() WHERE seq = ANY($1::bigint[])",
            [row["seq"] for row in rows],
        )
        OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    async def republish(self, since: float) -> int:
        """Send again every event published since ``since`` (wall clock): the broker lost them.

        Up to now, not up to this process's own disconnect: the services sharing this database lost
        their connections at different moments of the broker's shutdown (a graceful stop takes
        seconds), and the one that re-drives for all of them may have been the first to go. Events
        that already reached the new broker are sent twice; the consumers' inbox drops repeats.

        Returns how many rows went back to pending; the relay picks them up at once.
        """
        status = await self.db.primary.execute(
            "UPDATE outbox_event SET published_at = NULL WHERE published_at >= to_timestamp($1)",
            since,
        )
        self.wake()
        count = int(status.rsplit(" ", 1)[-1])
        log.warning("outbox: %d events published before the broker lost them will be published again", count)
        return count

    async def flush(self) -> int:
        """Publish everything pending now (the operator asks for this after a broker outage)."""
        total = 0
        while True:
            published = await self.publish_batch()
            total += published
            if published < self.batch_size:
                return total

    async def housekeeping(self, retention_s: float = 3600.0, interval_s: float = 5.0) -> None:
        """Report the backlog and delete rows published long ago, in small batches."""
        while not self._stopping:
            try:
                async with self.db.primary.acquire() as conn:
                    OUTBOX_PENDING.set(
                        await conn.fetchval("SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
                    )
                    await prune_published(conn, retention_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("outbox housekeeping skipped: %r", exc)
            await asyncio.sleep(interval_s)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
