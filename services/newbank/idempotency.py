"""The Idempotency-Key rules of API.md, shared by every POST that moves money.

The claim and the stored answer live in the same database transaction as the effect (see
``idempotency_claim`` in the common migration), so a replay, a concurrent duplicate on another
instance, or a retry after a failover all see one effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import Depends, Header
from fastapi.responses import Response

from newbank.errors import PROBLEM_JSON, ProblemError


def validate_idempotency_key(value: str | None) -> str:
    if value is None or value == "":
        raise ProblemError(400, "idempotency-key-required", "this request needs an Idempotency-Key header")
    if len(value) > 255 or not all(0x20 <= ord(ch) < 0x7F for ch in value):
        raise ProblemError(400, "invalid-idempotency-key", "Idempotency-Key must be 1-255 printable ASCII characters")
    return value


async def idempotency_key_header(
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    return validate_idempotency_key(idempotency_key)


IdempotencyKey = Annotated[str, Depends(idempotency_key_header)]


def request_fingerprint(method: str, path: str, body: Any) -> str:
    """What "the same request" means: the method, the path and the body as JSON with sorted keys."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class Outcome:
    """What a money-moving request answers: a status and a JSON body, maybe a replay."""

    __slots__ = ("body", "replayed", "status")

    def __init__(self, status: int, body: Any, replayed: bool = False) -> None:
        self.status = status
        self.body = body
        self.replayed = replayed

    @classmethod
    def from_sql(cls, result: dict[str, Any]) -> Outcome:
        return cls(int(result["status"]), result["body"], bool(result.get("replayed")))

    def response(self) -> Response:
        """Serialised with orjson: starlette's JSONResponse uses the standard library's json, which
        showed in the payment's profile."""
        headers = {"Idempotent-Replayed": "true"} if self.replayed else {}
        media_type = PROBLEM_JSON if self.status >= 400 else "application/json"
        return Response(orjson.dumps(self.body), status_code=self.status, headers=headers, media_type=media_type)


# Outcomes kept for replay: those decided on the money. A request refused as invalid (unknown
# resource, bad currency, ...) leaves nothing behind, so the caller can correct it and retry.
STORED_ERROR_STATUSES = frozenset({402})


async def run_idempotent(
    conn: asyncpg.Connection,
    scope: str,
    key: str,
    fingerprint: str,
    action: Callable[[asyncpg.Connection], Awaitable[Outcome]],
) -> Outcome:
    """Claim the key, run ``action`` and store its outcome, all in one transaction.

    ``action`` raises ProblemError for an invalid request; the transaction then rolls back and the
    claim is gone with it.
    """
    async with conn.transaction():
        prior = await conn.fetchval("SELECT idempotency_claim($1, $2, $3)", scope, key, fingerprint)
        if prior is not None:
            return Outcome.from_sql(prior)
        outcome = await action(conn)
        if outcome.status < 400 or outcome.status in STORED_ERROR_STATUSES:
            await conn.execute("SELECT idempotency_store($1, $2, $3, $4)", scope, key, outcome.status, outcome.body)
        else:
            await conn.execute("SELECT idempotency_release($1, $2)", scope, key)
        return outcome
