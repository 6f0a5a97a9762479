"""A cashback payment consumer that dies (SIGKILL) right after its database commit, before its ack.

Run by test_crash_between_commit_and_ack.py as ``python crash_consumer.py DSN AMQP_URL``: the real
InboxConsumer with the real handlers, except that the hook the service runs after each commit kills
the process, which is the worst moment for exactly-once: the effect is durable, the broker does not
know, and the message will be delivered again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys

from newbank.cashback.consumers import PAYMENT_EVENTS
from newbank.database import Database
from newbank.messaging.broker import Broker
from newbank.messaging.consumer import InboxConsumer


async def main(dsn: str, amqp_url: str) -> None:
    db = await Database.connect(dsn, min_size=1, max_size=2)
    broker = Broker(amqp_url)
    spec = dataclasses.replace(PAYMENT_EVENTS, after_commit=lambda: os.kill(os.getpid(), signal.SIGKILL))
    consumer = InboxConsumer(spec, db, broker, consumer_name="cashback:cashback.payment-events", prefetch=1)
    broker.on_connected(consumer.start)
    runner = asyncio.create_task(broker.run())
    await broker.connected.wait()
    print("consuming", flush=True)
    await runner


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
