"""The accounts service's domain: customers, their accounts, deposits, FX rates, merchants and keys."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from newbank.accounts import queries
from newbank.accounts.schemas import (
    AccountCreate,
    CustomerCreate,
    DepositCreate,
    FxRateSet,
    MerchantCreate,
)
from newbank.auth import KEY_PREFIX, Principal, generate_api_key, hash_api_key, is_admin_token
from newbank.database import Database
from newbank.errors import ProblemError, not_found
from newbank.idempotency import Outcome, request_fingerprint
from newbank.money import currency_exponent, format_rate
from newbank.settings import Settings

SOURCE = "accounts"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AccountsKeyResolver:
    """Resolves keys from the bank's own tables (the other services ask this one by introspection).

    Keys are looked up by their SHA-256 digest, so no stored secret is compared byte by byte; the
    answer is cached briefly because every request of every service needs it.
    """

    def __init__(self, settings: Settings, db: Database, ttl_s: float = 30.0, negative_ttl_s: float = 1.0):
        self._admin_token = settings.admin_token
        self._db = db
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, token: str) -> Principal | None:
        return (await self.resolve_many([token]))[0]

    async def resolve_many(self, tokens: list[str]) -> list[Principal | None]:
        """Each key's owner, in order; the keys not cached cost one query per kind, not one each."""
        now = time.monotonic()
        answers: list[Principal | None] = [None] * len(tokens)
        missing: dict[str, list[tuple[int, str]]] = {"merchant": [], "customer": []}
        for index, token in enumerate(tokens):
            if is_admin_token(token, self._admin_token):
                answers[index] = Principal("admin")
                continue
            kind = _KIND_BY_PREFIX.get(token[:4])
            if kind is None or len(token) > 200:
                continue
            digest = hash_api_key(token)
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                answers[index] = cached[1]
            else:
                missing[kind].append((index, digest))
        if len(self._cache) > 100_000:
            self._cache.clear()
        for kind, wanted in missing.items():
            if not wanted:
                continue
            found = await self._lookup(kind, [digest for _, digest in wanted])
            for index, digest in wanted:
                subject = found.get(digest)
                principal = Principal(kind, subject) if subject else None  # type: ignore[arg-type]
                answers[index] = principal
                self._cache[digest] = (now + (self._ttl_s if principal else self._negative_ttl_s), principal)
        return answers

    async def _lookup(self, kind: str, digests: list[str]) -> dict[str, UUID]:
        query = queries.MERCHANTS_BY_KEY if kind == "merchant" else queries.CUSTOMERS_BY_KEY
        return {row["api_key_hash"]: row["id"] for row in await self._db.primary.fetch(query, digests)}


_KIND_BY_PREFIX = {prefix: kind for kind, prefix in KEY_PREFIX.items()}


def make_key_resolver(settings: Settings, db: Database) -> AccountsKeyResolver:
    return AccountsKeyResolver(settings, db)


async def introspect(resolver: AccountsKeyResolver, tokens: list[str]) -> dict[str, Any]:
    return {"answers": [_introspection(principal) for principal in await resolver.resolve_many(tokens)]}


def _introspection(principal: Principal | None) -> dict[str, Any]:
    if principal is None:
        return {"active": False}
    return {"active": True, "kind": principal.kind, "sub": str(principal.id) if principal.id else None}


async def create_customer(db: Database, request: CustomerCreate) -> dict[str, Any]:
    api_key = generate_api_key("customer")
    row = await db.primary.fetchrow(
        queries.INSERT_CUSTOMER, request.name, request.country, request.email, hash_api_key(api_key)
    )
    return {**dict(row), "api_key": api_key}


async def open_account(db: Database, request: AccountCreate) -> dict[str, Any]:
    """A customer account, and its ``account.opened`` event in the same transaction."""
    async with db.transaction() as conn:
        if not await conn.fetchval(queries.CUSTOMER_EXISTS, request.customer_id):
            raise ProblemError(404, "customer-not-found", "no such customer")
        row = await conn.fetchrow(
            queries.INSERT_CUSTOMER_ACCOUNT,
            request.customer_id,
            request.currency,
            currency_exponent(request.currency),
        )
        await conn.execute(
            queries.ADD_EVENT,
            "account.opened",
            SOURCE,
            {
                "account_id": str(row["id"]),
                "customer_id": str(row["customer_id"]),
                "currency": row["currency"],
                "created_at": rfc3339(row["created_at"]),
            },
        )
    return dict(row)


async def get_account(db: Database, principal: Principal, account_id: UUID) -> dict[str, Any]:
    # Another customer's account answers 404 like a missing one: its existence is not theirs to know.
    owner = None if principal.is_admin else principal.id
    row = await db.primary.fetchrow(queries.CUSTOMER_ACCOUNT, account_id, owner)
    if row is None:
        raise ProblemError(404, "account-not-found", "no such account")
    return dict(row)


async def deposit(
    db: Database, principal: Principal, idempotency_key: str, path: str, account_id: UUID, request: DepositCreate
) -> Outcome:
    body = request.model_dump(mode="json")
    fingerprint = request_fingerprint("POST", path, body)
    result = await db.primary.fetchval(
        queries.MAKE_DEPOSIT,
        principal.scope,
        idempotency_key,
        fingerprint,
        account_id,
        request.amount,
        request.currency,
    )
    return Outcome.from_sql(result)


def _fx_rate(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "base": row["base"],
        "quote": row["quote"],
        "rate": format_rate(row["rate"]),
        "updated_at": row["updated_at"],
    }


def check_pair(base: str, quote: str) -> None:
    if base == quote:
        raise ProblemError(422, "validation-error", "base and quote must be different currencies")


async def set_fx_rate(db: Database, base: str, quote: str, request: FxRateSet) -> dict[str, Any]:
    check_pair(base, quote)
    row = await db.primary.fetchrow(queries.UPSERT_FX_RATE, base, quote, request.decimal)
    return _fx_rate(row)


async def get_fx_rate(db: Database, base: str, quote: str) -> dict[str, Any]:
    check_pair(base, quote)
    row = await db.primary.fetchrow(queries.FX_RATE, base, quote)
    if row is None:
        raise ProblemError(404, "fx-rate-not-found", f"no FX rate {base}/{quote}")
    return _fx_rate(row)


async def admit_onboarding(db: Database, settings: Settings, client_address: str) -> None:
    """Count this onboarding against the address's limit, or refuse it (refusals are not counted) with
    the seconds after which the address will be admitted."""
    limit = settings.onboarding_rate_limit_per_minute
    wait_s = await db.primary.fetchval(queries.ONBOARDING_ADMIT, client_address, limit)
    if wait_s:
        raise ProblemError(
            429,
            "rate-limited",
            f"at most {limit} onboardings per minute from one address",
            headers={"Retry-After": str(wait_s)},
        )


async def onboard_merchant(db: Database, request: MerchantCreate) -> dict[str, Any]:
    """The merchant, its settlement account and ``merchant.registered``, in one transaction."""
    api_key = generate_api_key("merchant")
    exponent = currency_exponent(request.currency)
    async with db.transaction() as conn:
        settlement_account_id = await conn.fetchval(queries.INSERT_SETTLEMENT_ACCOUNT, request.currency, exponent)
        row = await conn.fetchrow(
            queries.INSERT_MERCHANT,
            request.name,
            request.country,
            request.currency,
            exponent,
            request.website,
            request.category,
            hash_api_key(api_key),
            settlement_account_id,
        )
        await conn.execute(
            queries.ADD_EVENT,
            "merchant.registered",
            SOURCE,
            {
                "merchant_id": str(row["id"]),
                "name": row["name"],
                "country": row["country"],
                "currency": row["currency"],
                "category": row["category"],
                "website": row["website"],
                "created_at": rfc3339(row["created_at"]),
            },
        )
    return {**dict(row), "api_key": api_key}


async def merchant_profile(db: Database, merchant_id: UUID) -> dict[str, Any]:
    row = await db.primary.fetchrow(queries.MERCHANT_WITH_SETTLEMENT, merchant_id)
    if row is None:
        raise not_found("merchant")
    return dict(row)
