"""Events the accounts service applies: ``cashback.redeemed`` credits the bank account once."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from newbank.accounts import queries
from newbank.accounts.service import SOURCE
from newbank.messaging.consumer import ConsumerSpec, PermanentEventError
from newbank.messaging.events import Event
from newbank.messaging.topology import ACCOUNTS_REDEMPTIONS


async def on_cashback_redeemed(conn: asyncpg.Connection, event: Event) -> None:
    """Cashback funding pays the customer account, then ``redemption.completed`` tells cashback.

    The inbox makes a redelivered event a no-op; ``credit_redemption`` also refuses a second credit
    for one redemption id, should the cashback service ever publish it twice under two event ids.
    """
    data = event.data
    try:
        redemption_id = UUID(str(data["redemption_id"]))
        account_id = UUID(str(data["account_id"]))
        amount = data["amount"]
        currency = str(data["currency"])
    except (KeyError, ValueError) as exc:
        raise PermanentEventError(f"cashback.redeemed without a valid {exc}") from exc
    if type(amount) is not int or amount <= 0:
        raise PermanentEventError(f"cashback.redeemed with amount {amount!r}")
    try:
        journal_entry_id = await conn.fetchval(queries.CREDIT_REDEMPTION, redemption_id, account_id, amount, currency)
    except (asyncpg.NoDataFoundError, asyncpg.DataError) as exc:
        raise PermanentEventError(str(exc)) from exc
    if journal_entry_id is None:
        return
    completed_at = await conn.fetchval("SELECT rfc3339(now())")
    await conn.execute(
        queries.ADD_EVENT,
        "redemption.completed",
        SOURCE,
        {
            "redemption_id": str(redemption_id),
            "account_id": str(account_id),
            "customer_id": data.get("customer_id"),
            "amount": amount,
            "currency": currency,
            "journal_entry_id": str(journal_entry_id),
            "completed_at": completed_at,
        },
    )


def consumers() -> list[ConsumerSpec]:
    return [ConsumerSpec(queue=ACCOUNTS_REDEMPTIONS, handlers={"cashback.redeemed": on_cashback_redeemed})]
