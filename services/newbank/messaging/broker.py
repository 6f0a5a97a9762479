"""One supervised AMQP connection per process.

``run()`` connects, declares the topology, calls the ``on_connected`` callbacks (consumers start
there), waits for the connection to drop, and starts again with back-off. A broker restarted with an
empty data folder therefore gets its topology back from every service that reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange
from aio_pika.connection import make_url

from newbank.messaging.topology import TOPOLOGY, Topology

log = logging.getLogger("newbank.broker")

OnConnected = Callable[[aio_pika.abc.AbstractConnection], Awaitable[None]]


async def declare_topology(channel: AbstractChannel, topology: Topology = TOPOLOGY) -> AbstractExchange:
    """Declare the exchanges, quorum queues, DLQs, retry queues and bindings (idempotent)."""
    events = await channel.declare_exchange(topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    for spec in topology.queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        for routing_key in spec.routing_keys:
            await queue.bind(events, routing_key)
        dlq = await channel.declare_queue(spec.dead_letter_queue, durable=True, arguments=spec.dead_letter_arguments())
        await dlq.bind(dlx, spec.name)
        await channel.declare_queue(spec.retry_queue, durable=True, arguments=spec.retry_arguments())
    return events


OnDataLost = Callable[[float], Awaitable[object]]


class Broker:
    def __init__(self, url: str, topology: Topology = TOPOLOGY, *, marker: str = "") -> None:
        self.url = url
        self.topology = topology
        # A durable queue that nothing consumes, one per outbox (per database: the services sharing it
        # need one re-drive, not one each): if a reconnect finds it gone, the broker lost its
        # definitions — and with them any message it held (see ``on_data_lost``).
        self.marker_queue = f"newbank.marker.{marker}" if marker else ""
        self.disconnected_at: float | None = None  # wall clock of the last connection lost
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self._on_connected: list[OnConnected] = []
        self._on_data_lost: list[OnDataLost] = []
        self._publish_channel: AbstractChannel | None = None
        self._publish_lock = asyncio.Lock()
        self._stopping = False
        self.connected = asyncio.Event()

    def on_connected(self, callback: OnConnected) -> None:
        self._on_connected.append(callback)

    def on_data_lost(self, callback: OnDataLost) -> None:
        """``callback(disconnected_at)`` after a reconnect to a broker that lost its data folder.

        Messages it had confirmed but not yet delivered are gone; their outbox rows are marked
        published, so nothing would send them again. The callback re-drives them (consumers are
        idempotent, so a message sent twice changes nothing).
        """
        self._on_data_lost.append(callback)

    async def _redrive(self, lost_at: float) -> bool:
        """Run the ``on_data_lost`` callbacks, each retried for about a minute (the database may be
        failing over too); False if one never succeeded."""
        log.warning("the broker lost its data while we were away; re-driving recent events")
        for callback in self._on_data_lost:
            for attempt in range(60):
                try:
                    await callback(lost_at)
                    break
                except Exception as exc:
                    log.warning("re-driving events failed (attempt %d): %r", attempt + 1, exc)
                    await asyncio.sleep(1.0)
            else:
                return False
        return True

    async def _marker_missing(self, connection: aio_pika.abc.AbstractConnection) -> bool:
        if not self.marker_queue:
            return False
        channel = await connection.channel()
        try:
            await channel.declare_queue(self.marker_queue, passive=True)
            return False
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return True
        finally:
            if not channel.is_closed:
                await channel.close()

    @property
    def available(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    async def run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                connection = await self._connect()
            except Exception as exc:
                log.warning("broker unreachable: %s", exc.__class__.__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            closed = asyncio.Event()
            connection.close_callbacks.add(lambda *_, done=closed: done.set())
            try:
                self.connection = connection
                data_lost = await self._marker_missing(connection)
                channel = await connection.channel()
                await declare_topology(channel, self.topology)
                await channel.close()
                for callback in self._on_connected:
                    await callback(connection)
                self.connected.set()
                delay = 0.2
                log.info("broker connected")
                redriven = True
                if data_lost and self.disconnected_at is not None:
                    redriven = await self._redrive(self.disconnected_at)
                if redriven and self.marker_queue:
                    # Only now: had the re-drive failed, the next reconnect finds no marker and tries again.
                    marker_channel = await connection.channel()
                    await marker_channel.declare_queue(self.marker_queue, durable=True)
                    await marker_channel.close()
                await closed.wait()
            except Exception as exc:
                log.warning("broker session ended: %r", exc)
            finally:
                if self.connected.is_set():
                    self.disconnected_at = time.time()
                self.connected.clear()
                self.connection = None
                self._publish_channel = None
                if not connection.is_closed:
                    await connection.close()
            if not self._stopping:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        """``aio_pika.connect``, but a failed attempt is closed here rather than left to the garbage
        collector, whose ``__del__`` schedules ``close()`` and, in a thread without an event loop, leaves
        the coroutine never awaited."""
        connection = aio_pika.Connection(make_url(self.url))
        try:
            await connection.connect(timeout=5)
        except BaseException:
            with contextlib.suppress(Exception):  # the attempt's own error is the one to report
                await connection.close()
            raise
        return connection

    async def publish_channel(self) -> AbstractChannel:
        """A channel with publisher confirms; reopened after any failure (a nacking channel stays bad)."""
        async with self._publish_lock:
            if self._publish_channel is None or self._publish_channel.is_closed:
                if not self.available:
                    raise ConnectionError("broker not connected")
                assert self.connection is not None
                self._publish_channel = await self.connection.channel(publisher_confirms=True)
            return self._publish_channel

    async def reset_publish_channel(self) -> None:
        async with self._publish_lock:
            channel, self._publish_channel = self._publish_channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception:
                pass

    async def close(self) -> None:
        self._stopping = True
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()


__all__ = ["Broker", "declare_topology"]
