"""The cashback API's domain logic: balances and entries, redemptions."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from newbank.auth import Principal
from newbank.cashback import errors, queries
from newbank.cashback.schemas import RedemptionIn
from newbank.database import Database
from newbank.idempotency import Outcome, request_fingerprint, run_idempotent


def _may_see(principal: Principal, customer_id: UUID) -> bool:
    return principal.is_admin or (principal.kind == "customer" and principal.id == customer_id)


def encode_cursor(created_at: str, payment_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, payment_id])).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime | None, UUID | None]:
    if cursor is None:
        return None, None
    try:
        created_at, payment_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment, UUID(payment_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise errors.invalid_cursor() from exc


async def account_view(
    db: Database, principal: Principal, account_id: UUID, *, limit: int, cursor: str | None
) -> bytes:
    """The balance and a page of entries, newest first, as the response body; a customer sees only
    its own accounts. The entries are the database's JSON, embedded as they are."""
    after_created, after_payment = decode_cursor(cursor)
    row = await db.primary.fetchrow(queries.ACCOUNT_WITH_ENTRIES, account_id, after_created, after_payment, limit)
    if row is None or not _may_see(principal, row["customer_id"]):
        raise errors.account_not_found()
    next_cursor = None
    if row["size"] == limit:
        next_cursor = encode_cursor(row["last_created_at"], str(row["last_payment_id"]))
    return orjson.dumps(
        {
            "account_id": str(row["account_id"]),
            "currency": row["currency"],
            "balance": row["balance"],
            "entries": orjson.Fragment(row["entries"]),
            "next_cursor": next_cursor,
        }
    )


async def redeem(
    db: Database, principal: Principal, account_id: UUID, redemption: RedemptionIn, key: str, path: str
) -> Outcome:
    """Debit the cashback balance and send ``cashback.redeemed``, once per Idempotency-Key.

    The debit, the redemption row, the outbox event and the stored answer commit together (one
    server-side function plus the key's claim and store), so a replay, a concurrent duplicate or a
    retry after a failover moves the money once.
    """
    body = redemption.model_dump()
    fingerprint = request_fingerprint("POST", path, body)
    assert principal.id is not None

    async def action(conn: Any) -> Outcome:
        return Outcome.from_sql(await conn.fetchval(queries.REDEEM, account_id, principal.id, redemption.amount))

    async with db.primary.acquire() as conn:
        return await run_idempotent(conn, principal.scope, key, fingerprint, action)


async def get_redemption(db: Database, principal: Principal, redemption_id: UUID) -> dict[str, Any]:
    row = await db.primary.fetchrow(queries.GET_REDEMPTION, redemption_id)
    if row is None or not _may_see(principal, row["customer_id"]):
        raise errors.redemption_not_found()
    return row["body"]
