"""What the partners service listens to.

- ``partners.merchant-events`` (durable, shared by the instances): ``merchant.registered``.
- ``partner.offer_changed``: every instance binds its own exclusive, auto-delete queue, so the event
  reaches all of them and each drops its cache. Losing one (a broker restart) costs at most one TTL;
  a reconnect drops the cache too, since events may have been missed while disconnected.
"""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from newbank.messaging.consumer import ConsumerSpec
from newbank.messaging.topology import EVENTS_EXCHANGE, OFFER_CHANGED_ROUTING_KEY, PARTNERS_MERCHANTS
from newbank.partners.cache import PartnerCache
from newbank.partners.service import on_merchant_registered

log = logging.getLogger("newbank.partners")

MERCHANT_EVENTS = ConsumerSpec(
    queue=PARTNERS_MERCHANTS,
    handlers={"merchant.registered": on_merchant_registered},
    versions={"merchant.registered": frozenset({1})},
)


def offer_changed_listener(cache: PartnerCache, exchange: str = EVENTS_EXCHANGE):
    """An ``on_connected`` callback binding this instance's invalidation queue."""

    async def start(connection: AbstractConnection) -> None:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, OFFER_CHANGED_ROUTING_KEY)

        async def on_message(message: AbstractIncomingMessage) -> None:
            cache.clear()

        await queue.consume(on_message, no_ack=True)
        cache.clear()
        log.info("listening for %s", OFFER_CHANGED_ROUTING_KEY)

    return start
