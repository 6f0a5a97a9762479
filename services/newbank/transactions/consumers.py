"""Events the transaction service applies: the cashback outcome of a payment, shown on it."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from newbank.messaging.consumer import ConsumerSpec, PermanentEventError
from newbank.messaging.events import Event
from newbank.messaging.topology import TRANSACTIONS_CASHBACK_STATUS
from newbank.transactions import queries

_STATUS_OF_TYPE = {"cashback.credited": "credited", "cashback.none": "none", "cashback.reversed": "reversed"}


async def on_cashback_outcome(conn: asyncpg.Connection, event: Event) -> None:
    """``cashback.credited|none|reversed``: events may arrive out of order, so ``entry_version``
    decides; an older outcome than the one shown changes nothing."""
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
    await conn.execute(queries.UPDATE_CASHBACK, payment_id, status, amount, version)


def consumers() -> list[ConsumerSpec]:
    handlers = dict.fromkeys(_STATUS_OF_TYPE, on_cashback_outcome)
    return [ConsumerSpec(queue=TRANSACTIONS_CASHBACK_STATUS, handlers=handlers)]
