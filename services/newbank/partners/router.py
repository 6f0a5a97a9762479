"""HTTP only: the partners endpoints of API.md."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from newbank.auth import MerchantOrAdmin
from newbank.errors import problem_responses
from newbank.partners import service
from newbank.partners.dependencies import Cache, Db
from newbank.partners.schemas import Offer, OfferIn, PartnerPage, PartnerStore

router = APIRouter(prefix="/api/v1/partners", tags=["partners"])

JSON = "application/json"


@router.get("", response_model=PartnerPage, responses=problem_responses(400, 422))
async def list_partners(
    db: Db,
    cache: Cache,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^[^\x00]*$")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    body = await service.list_partners(
        db, cache, country=country.upper() if country else None, category=category, cursor=cursor, limit=limit
    )
    return Response(body, media_type=JSON)


@router.get("/{merchant_id}", response_model=PartnerStore, responses=problem_responses(404, 422))
async def get_partner(merchant_id: UUID, db: Db, cache: Cache) -> Response:
    return Response(await service.get_partner(db, cache, merchant_id), media_type=JSON)


@router.put("/{merchant_id}/offer", response_model=Offer, responses=problem_responses(400, 401, 403, 404, 413, 422))
async def put_offer(merchant_id: UUID, offer: OfferIn, principal: MerchantOrAdmin, db: Db, cache: Cache) -> Offer:
    return Offer.model_validate(await service.set_offer(db, cache, principal, merchant_id, offer))


@router.delete("/{merchant_id}/offer", status_code=204, responses=problem_responses(401, 403, 404, 422))
async def delete_offer(merchant_id: UUID, principal: MerchantOrAdmin, db: Db, cache: Cache) -> Response:
    await service.end_offer(db, cache, principal, merchant_id)
    return Response(status_code=204)
