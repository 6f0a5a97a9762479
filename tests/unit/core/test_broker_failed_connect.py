"""A connect to a broker that is down leaves no half-open connection behind.

aio-pika's ``Connection.__del__`` schedules ``close()`` on a connection that was never closed. When the
garbage collector gets to it in a thread without an event loop (``asyncio.to_thread`` work), that
coroutine can never run and Python warns "coroutine 'Connection.close' was never awaited" — seen in CI
after tests whose services had retried a stopped RabbitMQ.
"""

from __future__ import annotations

import asyncio
import gc
import socket

import aio_pika

from newbank.messaging.broker import Broker


def _port_nobody_listens_on() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connects_are_closed_not_left_to_the_collector() -> None:
    port = _port_nobody_listens_on()
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{port}/")
    gc.disable()  # keep the refused connections in sight (log records may hold them anyway)
    try:
        task = asyncio.create_task(broker.run())
        await asyncio.sleep(1.0)  # refused, retried after 0.2 s and 0.4 s
        await broker.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ours = [
            obj for obj in gc.get_objects()
            if isinstance(obj, aio_pika.Connection) and obj.url.port == port
        ]  # fmt: skip
    finally:
        gc.enable()
    assert len(ours) >= 2, "the broker should have tried (and been refused) more than once"
    assert [c for c in ours if not c.is_closed] == []
