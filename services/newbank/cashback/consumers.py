"""What the cashback service consumes: the bank's payment and account events (quorum queues,
manual acks, inbox; see newbank.messaging.consumer). Competing instances share each queue."""

from __future__ import annotations

from newbank.cashback import crediting
from newbank.messaging.consumer import ConsumerSpec
from newbank.messaging.topology import CASHBACK_BANK_EVENTS, CASHBACK_PAYMENTS

V1 = frozenset({1})

PAYMENT_EVENTS = ConsumerSpec(
    queue=CASHBACK_PAYMENTS,
    handlers={
        "payment.completed": crediting.on_payment_completed,
        "payment.refunded": crediting.on_payment_refunded,
    },
    versions={"payment.completed": V1, "payment.refunded": V1},
    batch_handlers={"payment.completed": crediting.on_payments_completed},
)

BANK_EVENTS = ConsumerSpec(
    queue=CASHBACK_BANK_EVENTS,
    handlers={
        "account.opened": crediting.on_account_opened,
        "redemption.completed": crediting.on_redemption_completed,
    },
    versions={"account.opened": V1, "redemption.completed": V1},
)
