"""Events the transaction service applies: the cashback outcome of a payment, shown on it."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from newbank.messaging.consumer import ConsumerSpec, PermanentEventError
from newbank.messaging.events import Event
from newbank.messaging.topology import TRANSACTIONS_CASHBACK_STATUS
from newbank.transactions import queries

_STATUS_OF_TYPE = {"cashback.credited": "credited", "cashback.none": "none", "cashback.reversed": "reversed"}


def _outcome(event: Event) -> tuple[UUID, str, int | None, int]:
    """(payment id, status, amount, entry version) of a ``cashback.*`` event, or PermanentEventError."""
    data = event.data
    try:
        payment_id = UUID(str(data["payment_id"]))
        version = int(data["entry_version"])
    except (KeyError, ValueError, TypeError) as exc:
        raise PermanentEventError(f"{event.type} without a valid payment_id/entry_version: {exc}") from exc
    status = data.get("status") or _STATUS_OF_TYPE[event.type]
    if status not in ("credited", "none", "reversed"):
        raise PermanentEventError(f"{event.type} with status {status!r}")
    amount = data.get("amount")
    if status == "none":
        amount = None
    elif type(amount) is not int or amount < 0:
        raise PermanentEventError(f"{event.type} with amount {amount!r}")
    return payment_id, status, amount, version


async def on_cashback_outcome(conn: asyncpg.Connection, event: Event) -> None:
    """``cashback.credited|none|reversed``: events may arrive out of order, so ``entry_version``
    decides; an older outcome than the one shown changes nothing."""
    await conn.execute(queries.UPDATE_CASHBACK, *_outcome(event))


async def on_cashback_outcomes(conn: asyncpg.Connection, events: list[Event]) -> None:
    """A run of outcomes in one statement. Only the newest outcome of a payment can change it, in
    whatever order they are applied, so the run keeps that one per payment."""
    newest: dict[UUID, tuple[UUID, str, int | None, int]] = {}
    for event in events:
        outcome = _outcome(event)
        kept = newest.get(outcome[0])
        if kept is None or outcome[3] > kept[3]:
            newest[outcome[0]] = outcome
    columns = list(zip(*newest.values(), strict=True))
    await conn.execute(queries.UPDATE_CASHBACKS, *(list(column) for column in columns))


def consumers() -> list[ConsumerSpec]:
    handlers = dict.fromkeys(_STATUS_OF_TYPE, on_cashback_outcome)
    batch_handlers = dict.fromkeys(_STATUS_OF_TYPE, on_cashback_outcomes)
    return [ConsumerSpec(queue=TRANSACTIONS_CASHBACK_STATUS, handlers=handlers, batch_handlers=batch_handlers)]
