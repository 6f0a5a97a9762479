"""The RabbitMQ topology of DESIGN.md, as data.

One durable topic exchange for events, quorum queues per consumer group, a dead-letter exchange with
one DLQ per queue and one delay queue per queue (retries with back-off). The same description is
declared by the services at start-up (AMQP) and re-declared by the operator's recovery (management
HTTP API), so there is exactly one place that says what must exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS_EXCHANGE = "newbank.events"
DEAD_LETTER_EXCHANGE = "newbank.dlx"
RETRY_EXCHANGE = "newbank.retry"


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum queue, the routing keys bound to it, and its DLQ / retry companions."""

    name: str
    routing_keys: tuple[str, ...]
    consumer_service: str

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"

    @property
    def retry_queue(self) -> str:
        return f"{self.name}.retry"

    def arguments(self) -> dict[str, object]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
        }

    def dead_letter_arguments(self) -> dict[str, object]:
        return {"x-queue-type": "quorum"}

    def retry_arguments(self) -> dict[str, object]:
        # Messages wait here for their per-message TTL (the back-off), then dead-letter back to the
        # main queue through the default exchange.
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.name,
        }


@dataclass(frozen=True)
class Topology:
    exchange: str = EVENTS_EXCHANGE
    dead_letter_exchange: str = DEAD_LETTER_EXCHANGE
    retry_exchange: str = RETRY_EXCHANGE
    queues: tuple[QueueSpec, ...] = field(default_factory=tuple)

    def queue(self, name: str) -> QueueSpec:
        for spec in self.queues:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def all_queue_names(self) -> list[str]:
        names: list[str] = []
        for spec in self.queues:
            names += [spec.name, spec.dead_letter_queue, spec.retry_queue]
        return names


# Which events go where (DESIGN.md "Flows").
CASHBACK_PAYMENTS = QueueSpec(
    name="cashback.payment-events",
    routing_keys=("payment.completed", "payment.refunded"),
    consumer_service="cashback",
)
PARTNERS_MERCHANTS = QueueSpec(
    name="partners.merchant-events",
    routing_keys=("merchant.registered",),
    consumer_service="partners",
)
ACCOUNTS_REDEMPTIONS = QueueSpec(
    name="accounts.cashback-events",
    routing_keys=("cashback.redeemed",),
    consumer_service="accounts",
)
TRANSACTIONS_CASHBACK_STATUS = QueueSpec(
    name="transactions.cashback-events",
    routing_keys=("cashback.credited", "cashback.none", "cashback.reversed"),
    consumer_service="transactions",
)
CASHBACK_BANK_EVENTS = QueueSpec(
    name="cashback.bank-events",
    routing_keys=("account.opened", "redemption.completed"),
    consumer_service="cashback",
)

# partner.offer_changed reaches every partners instance: each one binds its own exclusive,
# auto-delete queue (not part of the durable topology: a cache drop is safe to lose, TTL backs it).
OFFER_CHANGED_ROUTING_KEY = "partner.offer_changed"

TOPOLOGY = Topology(
    queues=(
        CASHBACK_PAYMENTS,
        PARTNERS_MERCHANTS,
        ACCOUNTS_REDEMPTIONS,
        TRANSACTIONS_CASHBACK_STATUS,
        CASHBACK_BANK_EVENTS,
    )
)
