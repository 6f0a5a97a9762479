"""Idempotent consumers: the inbox row and the effect commit together, then the message is acked.

Messages that arrive while a transaction is running are applied together in the next one (up to
``batch_size``): one connection, one bulk inbox insert and one synchronous commit for the lot instead of
one each, which is most of a consumer's cost under load. A batch that fails as a whole is applied
again message by message, so one bad event never holds back or poisons the others.

A redelivery (consumer killed between commit and ack, the same event published twice, a replayed
outbox row) finds its inbox row and changes nothing. Failures are sorted in three:
- transient (database failing over, broker hiccup): the message goes back to the queue after a pause,
  never to the DLQ;
- anything else (bad payload, unknown schema version, a bug): retried through the queue's ``.retry``
  delay queue with exponential back-off, then dead-lettered with its reason after ``max_retries``.
Nothing blocks the queue and nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aio_pika
import asyncpg
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from newbank.database import Database
from newbank.errors import TRANSIENT_DB_ERRORS
from newbank.messaging.broker import Broker
from newbank.messaging.events import Event, MalformedEvent, parse_event
from newbank.messaging.topology import QueueSpec
from newbank.observability import EVENTS_CONSUMED

log = logging.getLogger("newbank.consumer")

# Failures that say nothing about the event: the database failing over, or two transactions that
# collided (a deadlock or serialisation failure aborts the whole transaction, so a retry is safe).
_RETRY_IN_PLACE: tuple[type[BaseException], ...] = (
    *TRANSIENT_DB_ERRORS,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

Handler = Callable[[asyncpg.Connection, Event], Awaitable[None]]
# Applies consecutive events together (the same effect as their single handlers on each, in order).
BatchHandler = Callable[[asyncpg.Connection, list[Event]], Awaitable[None]]
RETRIES_HEADER = "x-newbank-retries"
ERROR_HEADER = "x-newbank-error"


class PermanentEventError(Exception):
    """This event cannot be processed as it is (bad payload, unknown version)."""


@dataclass
class ConsumerSpec:
    """Which queue, which handler per event type, and which schema versions it understands."""

    queue: QueueSpec
    handlers: Mapping[str, Handler]
    versions: Mapping[str, frozenset[int]] = field(default_factory=dict)
    # Optional: per event type, a handler for a run of consecutive events of the types it serves, so
    # that a batch costs a few statements instead of a few per event. Its effect must equal the
    # single-event handler's applied to each event in order; a run that fails fails the batch, which is
    # then applied one event at a time through the single-event handlers.
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)
    # Called after a commit that wrote outbox events (wakes the relay).
    after_commit: Callable[[], None] | None = None


class InboxConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        db: Database,
        broker: Broker,
        *,
        consumer_name: str,
        prefetch: int = 64,
        batch_size: int = 64,
        max_retries: int = 5,
        retry_base_delay_ms: int = 200,
    ) -> None:
        self.spec = spec
        self.db = db
        self.broker = broker
        self.consumer_name = consumer_name
        self.prefetch = prefetch
        self.batch_size = max(1, batch_size)
        self.max_retries = max_retries
        self.retry_base_delay_ms = retry_base_delay_ms
        self._arrived: deque[AbstractIncomingMessage] = deque()
        self._draining = False

    async def start(self, connection: AbstractConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await channel.get_queue(self.spec.queue.name, ensure=False)
        await queue.consume(self.on_message)

    def _check(self, event: Event) -> Handler:
        handler = self.spec.handlers.get(event.type)
        if handler is None:
            raise PermanentEventError(f"no handler for event type {event.type!r}")
        versions = self.spec.versions.get(event.type)
        if versions is not None and event.version not in versions:
            raise PermanentEventError(f"unknown schema version {event.version} of {event.type}")
        return handler

    async def process(self, event: Event) -> bool:
        """Apply the event once; returns False when it had been applied already."""
        return await self._apply([(event, self._check(event))]) == 1

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """aio-pika calls this in a task per delivery: the first one drains what has arrived, in
        delivery order, batch after batch; the others only queue their message."""
        self._arrived.append(message)
        if self._draining:
            return
        self._draining = True
        try:
            while self._arrived:
                count = min(len(self._arrived), self.batch_size)
                batch = [self._arrived.popleft() for _ in range(count)]
                try:
                    await self._handle_batch(batch)
                except Exception:
                    # A bug here must not leave the batch unacked for the channel's lifetime.
                    log.exception("batch not handled, requeued", extra={"queue": self.spec.queue.name})
                    for message in batch:
                        await _settle(message.nack(requeue=True))  # those settled already are skipped
        finally:
            self._draining = False

    async def _handle_batch(self, messages: list[AbstractIncomingMessage]) -> None:
        ready: list[tuple[AbstractIncomingMessage, Event, Handler]] = []
        for message in messages:
            try:
                event = parse_event(message.body)
                ready.append((message, event, self._check(event)))
            except (MalformedEvent, PermanentEventError) as exc:
                await self._retry_or_dead_letter(message, f"{exc.__class__.__name__}: {exc}")
        if len(ready) == 1:
            message, event, _ = ready[0]
            await self._settle_one(message, event)
        elif ready:
            await self._settle_batch(ready)

    async def _settle_batch(self, ready: list[tuple[AbstractIncomingMessage, Event, Handler]]) -> None:
        queue = self.spec.queue.name
        try:
            applied = await self._apply([(event, handler) for _, event, handler in ready])
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("transient failure, %d requeued: %r", len(ready), exc, extra={"queue": queue})
            EVENTS_CONSUMED.labels(queue, "requeued").inc(len(ready))
            await asyncio.sleep(1.0)
            for message, _, _ in ready:
                await _settle(message.nack(requeue=True))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A poison event, or a collision with a competing consumer: nothing was committed.
            # One by one, each gets its own outcome (applied, retried in place, or retried/dead-lettered).
            log.info("batch of %d failed (%r), applied one by one", len(ready), exc, extra={"queue": queue})
            for message, event, _ in ready:
                await self._settle_one(message, event)
            return
        EVENTS_CONSUMED.labels(queue, "applied").inc(applied)
        if len(ready) > applied:
            EVENTS_CONSUMED.labels(queue, "duplicate").inc(len(ready) - applied)
        await _ack_all([message for message, _, _ in ready])

    async def _apply(self, events: list[tuple[Event, Handler]]) -> int:
        """One transaction for the lot; returns how many events were applied (the rest were repeats)."""
        ids = [event.id for event, _ in events]
        async with self.db.primary.acquire() as conn, conn.transaction():
            fresh = {
                row["event_id"]
                for row in await conn.fetch(
                    "INSERT INTO inbox_event (consumer, event_id, event_type)"
                    " SELECT $1, e.id, e.type FROM unnest($2::uuid[], $3::text[]) AS e(id, type)"
                    " ON CONFLICT DO NOTHING RETURNING event_id",
                    self.consumer_name,
                    ids,
                    [event.type for event, _ in events],
                )
            }
            if not fresh:
                # Only repeats. Their effect may be committed only locally (a sync-replication wait
                # that was cancelled on a primary being failed away from). A commit waits for the
                # synchronous standby only if it wrote WAL: rewrite the inbox rows, so the standby has
                # confirmed the effect before the messages are acknowledged (issue 7, chaos 1c).
                await conn.execute(
                    "UPDATE inbox_event SET processed_at = processed_at"
                    " WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
                    self.consumer_name,
                    ids,
                )
            todo: list[tuple[Event, Handler]] = []
            for event, handler in events:
                if event.id in fresh:
                    fresh.discard(event.id)  # the same event twice in one batch is applied once
                    todo.append((event, handler))
            await self._run_handlers(conn, todo, bulk=len(events) > 1)
            applied = len(todo)
        if applied and self.spec.after_commit is not None:
            self.spec.after_commit()
        return applied

    async def _run_handlers(self, conn: asyncpg.Connection, todo: list[tuple[Event, Handler]], *, bulk: bool) -> None:
        """In order; with ``bulk``, each run of consecutive events whose types share a batch handler goes
        to it in one call."""
        start = 0
        while start < len(todo):
            event, handler = todo[start]
            batch_handler = self.spec.batch_handlers.get(event.type) if bulk else None
            if batch_handler is None:
                await handler(conn, event)
                start += 1
                continue
            end = start + 1
            while end < len(todo) and self.spec.batch_handlers.get(todo[end][0].type) is batch_handler:
                end += 1
            await batch_handler(conn, [run_event for run_event, _ in todo[start:end]])
            start = end

    async def _settle_one(self, message: AbstractIncomingMessage, event: Event) -> None:
        queue = self.spec.queue.name
        try:
            applied = await self.process(event)
        except _RETRY_IN_PLACE as exc:
            log.warning("transient failure, requeued: %r", exc, extra={"queue": queue})
            EVENTS_CONSUMED.labels(queue, "requeued").inc()
            await asyncio.sleep(1.0)
            await _settle(message.nack(requeue=True))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._retry_or_dead_letter(message, f"{exc.__class__.__name__}: {exc}")
            return
        EVENTS_CONSUMED.labels(queue, "applied" if applied else "duplicate").inc()
        await _settle(message.ack())

    async def _retry_or_dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        queue = self.spec.queue
        retries = int((message.headers or {}).get(RETRIES_HEADER, 0) or 0)
        headers = dict(message.headers or {})
        headers[ERROR_HEADER] = reason[:1000]
        try:
            channel = await self.broker.publish_channel()
            if retries < self.max_retries:
                headers[RETRIES_HEADER] = retries + 1
                delay_ms = self.retry_base_delay_ms * (2**retries)
                await channel.default_exchange.publish(
                    _copy(message, headers, expiration_ms=delay_ms), routing_key=queue.retry_queue
                )
                EVENTS_CONSUMED.labels(queue.name, "retried").inc()
                log.warning("event retried in %d ms: %s", delay_ms, reason, extra={"queue": queue.name})
            else:
                dlx = await channel.get_exchange(self.broker.topology.dead_letter_exchange, ensure=False)
                await dlx.publish(_copy(message, headers), routing_key=queue.name)
                EVENTS_CONSUMED.labels(queue.name, "dead_lettered").inc()
                log.error("event dead-lettered: %s", reason, extra={"queue": queue.name})
        except Exception as exc:
            log.warning("could not retry or dead-letter, requeued: %r", exc)
            await self.broker.reset_publish_channel()
            await asyncio.sleep(1.0)
            await message.nack(requeue=True)
            return
        await message.ack()


async def _settle(ack: Awaitable[None]) -> None:
    """Ack or nack; on a channel that has closed meanwhile the broker redelivers the message anyway
    (and the inbox drops the repeat), so that is logged, not raised."""
    try:
        await ack
    except (aio_pika.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError, RuntimeError) as exc:
        log.info("ack/nack not sent, the message will be redelivered: %r", exc)


async def _ack_all(messages: list[AbstractIncomingMessage]) -> None:
    """One ``multiple`` ack when the batch came on one channel: it is drained in delivery order, so
    every earlier delivery on that channel is settled already."""
    try:
        channels = {id(message.channel) for message in messages}
    except aio_pika.exceptions.ChannelInvalidStateError:
        channels = set()  # a channel has closed: ack one by one what can still be acked
    if len(channels) == 1:
        await _settle(messages[-1].ack(multiple=True))
    else:
        for message in messages:
            await _settle(message.ack())


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, object], expiration_ms: int | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers=headers,  # type: ignore[arg-type]
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        expiration=expiration_ms / 1000 if expiration_ms is not None else None,
    )
