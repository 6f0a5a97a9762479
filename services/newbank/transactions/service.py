"""Payments and refunds: validation happened in pydantic, the money moves in one SQL function call."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from newbank.auth import Principal
from newbank.database import Database
from newbank.errors import ProblemError
from newbank.idempotency import Outcome, request_fingerprint
from newbank.transactions import queries
from newbank.transactions.schemas import PaymentCreate, RefundCreate

PAYMENTS_PATH = "/api/v1/payments"
# A payment locks customer account then settlement account, a refund the other way round: two of
# them crossing may deadlock. PostgreSQL aborts one; running it again (same key) is safe.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 5


async def _call_with_retry(pool: asyncpg.Pool, sql: str, *args: Any) -> Outcome:
    for attempt in range(_ATTEMPTS):
        try:
            return Outcome.from_sql(await pool.fetchval(sql, *args))
        except _RETRYABLE:
            if attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.005 * (attempt + 1))
        except asyncpg.NumericValueOutOfRangeError as exc:
            # A huge amount at a huge rate converts past what any account can hold (bigint); the
            # statement rolled back whole, the key's claim with it, so nothing is left behind.
            raise ProblemError(422, "amount-too-large", "the amount converts to more than an account can hold") from exc
    raise AssertionError("unreachable")


async def make_payment(db: Database, merchant: Principal, idempotency_key: str, request: PaymentCreate) -> Outcome:
    fingerprint = request_fingerprint("POST", PAYMENTS_PATH, request.model_dump(mode="json"))
    return await _call_with_retry(
        db.primary,
        queries.MAKE_PAYMENT,
        merchant.scope,
        idempotency_key,
        fingerprint,
        merchant.id,
        request.account_id,
        request.amount,
        request.currency,
        request.reference,
    )


async def make_refund(
    db: Database, merchant: Principal, idempotency_key: str, payment_id: UUID, request: RefundCreate
) -> Outcome:
    fingerprint = request_fingerprint("POST", f"{PAYMENTS_PATH}/{payment_id}/refunds", request.model_dump(mode="json"))
    return await _call_with_retry(
        db.primary,
        queries.MAKE_REFUND,
        merchant.scope,
        idempotency_key,
        fingerprint,
        merchant.id,
        payment_id,
        request.amount,
    )


async def get_payment(db: Database, principal: Principal, payment_id: UUID) -> dict[str, Any]:
    # Read from the primary: a payment just made must be visible. Someone else's payment answers
    # 404 like a missing one, so that payment ids reveal nothing.
    merchant_id = principal.id if principal.kind == "merchant" else None
    customer_id = principal.id if principal.kind == "customer" else None
    body = await db.primary.fetchval(queries.PAYMENT, payment_id, merchant_id, customer_id)
    if body is None:
        raise ProblemError(404, "payment-not-found", "no such payment")
    return body


def encode_cursor(created_at: datetime, payment_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{payment_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, payment_id = raw.partition("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, UUID(payment_id)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ProblemError(400, "invalid-cursor", "the cursor is not one this API gave out") from exc


async def list_payments(db: Database, principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of payments, newest first, from the replica (a list may lag the primary slightly)."""
    after = decode_cursor(cursor) if cursor else (None, None)
    merchant_id = principal.id if principal.kind == "merchant" else None
    rows = await db.replica.fetch(queries.PAYMENT_PAGE, limit + 1, merchant_id, *after)
    items = [row["body"] for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last["created_at"], last["id"])
    return {"items": items, "next_cursor": next_cursor}
