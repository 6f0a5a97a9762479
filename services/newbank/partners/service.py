"""Partner stores and offers: the domain logic between the router and the SQL."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from pydantic import AwareDatetime, BaseModel, ValidationError

from newbank.auth import Principal
from newbank.database import Database
from newbank.messaging.consumer import PermanentEventError
from newbank.messaging.events import Event
from newbank.partners import errors, queries
from newbank.partners.cache import PartnerCache
from newbank.partners.offers import OfferVersion, is_listed
from newbank.partners.schemas import OfferIn


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode_cursor(merchant_id: UUID) -> str:
    return base64.urlsafe_b64encode(merchant_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> UUID | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (ValueError, binascii.Error) as exc:
        raise errors.invalid_cursor() from exc


def offer_json(row: asyncpg.Record | dict[str, Any], merchant_id: UUID, now: datetime) -> dict[str, Any]:
    version = OfferVersion(
        version=row["version"],
        rate_bps=row["rate_bps"],
        set_at=row["set_at"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
    )
    return {
        "merchant_id": str(merchant_id),
        "rate_bps": version.rate_bps,
        "valid_from": rfc3339(version.valid_from),
        "valid_until": rfc3339(version.valid_until),
        "version": version.version,
        "active": version.covers(now),
        "updated_at": rfc3339(version.set_at),
    }


def store_json(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    offer = None
    if row["version"] is not None:
        latest = OfferVersion(row["version"], row["rate_bps"], row["set_at"], row["valid_from"], row["valid_until"])
        if is_listed(latest, now):
            offer = offer_json(row, row["merchant_id"], now)
    return {
        "merchant_id": str(row["merchant_id"]),
        "name": row["name"],
        "country": row["country"],
        "category": row["category"],
        "currency": row["currency"],
        "website": row["website"],
        "offer": offer,
    }


async def list_partners(
    db: Database, cache: PartnerCache, *, country: str | None, category: str | None, cursor: str | None, limit: int
) -> bytes:
    after = decode_cursor(cursor)

    async def load() -> bytes:
        rows = await db.primary.fetch(queries.LIST_PARTNERS, country, category, after, limit + 1)
        now = datetime.now(UTC)
        items = [store_json(row, now) for row in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1]["merchant_id"]) if len(rows) > limit else None
        return orjson.dumps({"items": items, "next_cursor": next_cursor})

    return await cache.get(("list", country, category, after, limit), load)


async def get_partner(db: Database, cache: PartnerCache, merchant_id: UUID) -> bytes:
    async def load() -> bytes:
        row = await db.primary.fetchrow(queries.GET_PARTNER, merchant_id)
        # A miss is cached too (b""), so probing unknown ids does not reach the database every time.
        return b"" if row is None else orjson.dumps(store_json(row, datetime.now(UTC)))

    body = await cache.get(("one", merchant_id), load)
    if not body:
        raise errors.partner_not_found()
    return body


def _check_may_change(principal: Principal, merchant_id: UUID) -> None:
    if principal.is_admin:
        return
    if principal.kind != "merchant" or principal.id != merchant_id:
        raise errors.not_your_store()


async def set_offer(
    db: Database, cache: PartnerCache, principal: Principal, merchant_id: UUID, offer: OfferIn
) -> dict[str, Any]:
    """Record a new offer version (rate 0 ends the offer) and announce it to every instance."""
    _check_may_change(principal, merchant_id)
    row = await db.primary.fetchrow(
        queries.SET_OFFER, merchant_id, offer.rate_bps, offer.valid_from, offer.valid_until, principal.scope
    )
    if row is None:
        raise errors.partner_not_found()
    # This instance sees its own change at once; the others when the event reaches them.
    cache.clear()
    return offer_json(row, merchant_id, datetime.now(UTC))


async def end_offer(db: Database, cache: PartnerCache, principal: Principal, merchant_id: UUID) -> None:
    await set_offer(db, cache, principal, merchant_id, OfferIn(rate_bps=0))


class MerchantRegistered(BaseModel):
    merchant_id: UUID
    name: str
    country: str
    currency: str
    category: str | None = None
    website: str | None = None
    created_at: AwareDatetime


async def on_merchant_registered(conn: asyncpg.Connection, event: Event) -> None:
    """``merchant.registered``: the merchant becomes a partner store without an offer."""
    try:
        merchant = MerchantRegistered.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"bad merchant.registered payload: {exc.errors()[:3]}") from exc
    await conn.execute(
        queries.REGISTER_PARTNER,
        merchant.merchant_id,
        merchant.name,
        merchant.country,
        merchant.currency,
        merchant.category,
        merchant.website,
        merchant.created_at,
    )
