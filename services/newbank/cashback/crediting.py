"""Cashback from the bank's events: credited once per payment, reversed on refunds.

Each handler runs inside the consumer's transaction, which also records the event id in the inbox: a
redelivered or replayed event finds its inbox row and never gets here twice. The entry's primary key
(payment_id) adds a second guard for the same payment arriving under several event ids, and the entry
row lock serializes a payment and its refunds handled by competing consumers at the same time.

A refund may overtake its payment (several outbox relays publish in no global order): it carries the
payment's facts, so the entry is made from them first and the refund applied to it; the late
payment.completed then finds the entry and does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from newbank.cashback import queries
from newbank.cashback.rule import EntryState, cashback_for, entry_status
from newbank.cashback.schemas import (
    AccountOpened,
    PaymentCompleted,
    PaymentFacts,
    PaymentRefunded,
    RedemptionCompleted,
)
from newbank.messaging.consumer import PermanentEventError
from newbank.messaging.events import Event
from newbank.partners.offers import OfferVersion, offer_in_force

log = logging.getLogger("newbank.cashback")

Payload = TypeVar("Payload", bound=BaseModel)


def parse(model: type[Payload], event: Event) -> Payload:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"bad {event.type} payload: {exc.errors(include_url=False)[:3]}") from exc


@dataclass(frozen=True, slots=True)
class Entry:
    payment_id: Any
    account_id: Any
    merchant_id: Any
    currency: str
    state: EntryState
    entry_version: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Entry:
        state = EntryState(row["payment_amount"], row["earned"], row["refunded_amount"], row["reversed_amount"])
        return cls(
            row["payment_id"], row["account_id"], row["merchant_id"], row["currency"], state, row["entry_version"]
        )

    def event_data(self) -> dict[str, Any]:
        """What the transaction service needs to show ``cashback`` on the payment."""
        return {
            "payment_id": str(self.payment_id),
            "account_id": str(self.account_id),
            "merchant_id": str(self.merchant_id),
            "status": self.state.status,
            "amount": self.state.net,
            "earned": self.state.earned,
            "reversed_amount": self.state.reversed_amount,
            "currency": self.currency,
            "entry_version": self.entry_version,
        }


def _offer_in_force(row: asyncpg.Record, payment: PaymentFacts) -> OfferVersion | None:
    if row["offer_version_in_force"] is None:
        return None
    latest = OfferVersion(
        version=row["offer_version_in_force"],
        rate_bps=row["offer_rate_bps"],
        set_at=row["offer_set_at"],
        valid_from=row["offer_valid_from"],
        valid_until=row["offer_valid_until"],
    )
    return offer_in_force([latest], payment.created_at)


def _event_type(entry: Entry, *, reversal: bool) -> str:
    return "cashback.reversed" if reversal else f"cashback.{entry.state.status}"


async def ensure_entry(conn: asyncpg.Connection, payment: PaymentFacts, *, announce: bool) -> tuple[Entry, bool]:
    """The payment's entry, locked; made, credited (and announced if ``announce``) if it did not exist.

    Two round trips for a new payment, one for a known one: the statements do the locking, the
    once-only insert, the credit and the outbox event; this function decides the amounts.
    """
    row = await conn.fetchrow(queries.ENTRY_AND_OFFER, payment.payment_id, payment.merchant_id, payment.created_at)
    if row["payment_id"] is not None:
        return Entry.from_row(row), False
    offer = _offer_in_force(row, payment)
    rate_bps = offer.rate_bps if offer else 0
    earned = cashback_for(payment.debited_amount, rate_bps)
    entry = Entry(
        payment.payment_id,
        payment.account_id,
        payment.merchant_id,
        payment.account_currency,
        EntryState(payment_amount=payment.amount, earned=earned),
        entry_version=1,
    )
    created = await conn.fetchrow(
        queries.CREATE_ENTRY,
        payment.payment_id,
        payment.account_id,
        payment.merchant_id,
        entry_status(earned, 0),
        payment.account_currency,
        payment.debited_amount,
        payment.amount,
        payment.currency,
        rate_bps,
        offer.version if offer else None,
        earned,
        payment.created_at,
        payment.customer_id,
        _event_type(entry, reversal=False) if announce else None,
        entry.event_data(),
    )
    if created is None:  # another consumer made it meanwhile: use theirs, locked
        row = await conn.fetchrow(queries.ENTRY_AND_OFFER, payment.payment_id, payment.merchant_id, payment.created_at)
        return Entry.from_row(row), False
    return entry, True


async def on_payment_completed(conn: asyncpg.Connection, event: Event) -> None:
    await ensure_entry(conn, parse(PaymentCompleted, event), announce=True)


async def on_payments_completed(conn: asyncpg.Connection, events: list[Event]) -> None:
    """A run of payment.completed events in two statements, whatever its length: the same entries,
    credits and cashback events as ``on_payment_completed`` on each in turn (an account earning twice
    in the run is credited once with the sum)."""
    payments: dict[Any, PaymentFacts] = {}
    for event in events:
        payment = parse(PaymentCompleted, event)
        payments.setdefault(payment.payment_id, payment)  # the same payment under two event ids: once
    facts = list(payments.values())
    rows = await conn.fetch(
        queries.ENTRIES_AND_OFFERS,
        [p.payment_id for p in facts],
        [p.merchant_id for p in facts],
        [p.created_at for p in facts],
    )
    new: list[tuple[PaymentFacts, Entry, OfferVersion | None]] = []
    for payment, row in zip(facts, rows, strict=True):
        if row["known"]:
            continue
        offer = _offer_in_force(row, payment)
        earned = cashback_for(payment.debited_amount, offer.rate_bps if offer else 0)
        state = EntryState(payment_amount=payment.amount, earned=earned)
        entry = Entry(payment.payment_id, payment.account_id, payment.merchant_id, payment.account_currency, state, 1)
        new.append((payment, entry, offer))
    if not new:
        return
    columns: list[list[Any]] = [[] for _ in range(15)]
    for payment, entry, offer in new:
        values = (
            payment.payment_id,
            payment.account_id,
            payment.merchant_id,
            entry_status(entry.state.earned, 0),
            payment.account_currency,
            payment.debited_amount,
            payment.amount,
            payment.currency,
            offer.rate_bps if offer else 0,
            offer.version if offer else None,
            entry.state.earned,
            payment.created_at,
            payment.customer_id,
            _event_type(entry, reversal=False),
            orjson.dumps(entry.event_data()).decode(),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.fetchval(queries.CREATE_ENTRIES, *columns)


async def on_payment_refunded(conn: asyncpg.Connection, event: Event) -> None:
    """Reverse the refunded share; the entry is made first from the refund's payment facts if the
    payment.completed event has not arrived yet. One cashback event says the entry's final state."""
    refund = parse(PaymentRefunded, event)
    if refund.refunded_amount > refund.payment_amount:
        raise PermanentEventError("refunded_amount exceeds payment_amount")
    entry, created = await ensure_entry(conn, refund.payment(), announce=False)
    before = entry.state
    after = before.after_refund(refund.refunded_amount)
    reversed_now = after.reversed_amount - before.reversed_amount
    changed = after != before
    final = Entry(
        entry.payment_id,
        entry.account_id,
        entry.merchant_id,
        entry.currency,
        after,
        entry.entry_version + 1 if changed else entry.entry_version,
    )
    await conn.execute(
        queries.APPLY_REFUND,
        refund.refund_id,
        refund.payment_id,
        refund.amount,
        refund.refunded_amount,
        reversed_now,
        refund.created_at,
        after.refunded_amount,
        after.reversed_amount,
        after.status,
        final.entry_version,
        changed,
        entry.account_id,
        _event_type(final, reversal=reversed_now > 0) if changed or created else None,
        final.event_data(),
    )


async def on_account_opened(conn: asyncpg.Connection, event: Event) -> None:
    account = parse(AccountOpened, event)
    await conn.execute(
        queries.UPSERT_ACCOUNT_OPENED, account.account_id, account.customer_id, account.currency, account.created_at
    )


async def on_redemption_completed(conn: asyncpg.Connection, event: Event) -> None:
    """The accounts service credited the bank account: the redemption is complete."""
    done = parse(RedemptionCompleted, event)
    found = await conn.fetchval(queries.COMPLETE_REDEMPTION, done.redemption_id, done.account_id, done.completed_at)
    if found is None:
        raise PermanentEventError(f"no redemption {done.redemption_id} of account {done.account_id}")
