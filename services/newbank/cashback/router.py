"""HTTP only: the cashback endpoints of API.md."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from newbank.auth import CustomerOrAdmin, CustomerPrincipal
from newbank.cashback import service
from newbank.cashback.dependencies import Db, Relay
from newbank.cashback.schemas import CashbackAccount, Redemption, RedemptionIn
from newbank.errors import COMMON_PROBLEMS, problem_responses
from newbank.idempotency import IdempotencyKey

router = APIRouter(prefix="/api/v1/cashback", tags=["cashback"])


@router.get(
    "/accounts/{account_id}",
    response_model=None,
    responses={
        200: {"model": CashbackAccount, "description": "the balance and a page of entries, newest first"},
        **problem_responses(*COMMON_PROBLEMS, 403, 404),
    },
)
async def get_cashback_account(
    account_id: UUID,
    principal: CustomerOrAdmin,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    # The body is built from the database's JSON (service.account_view), not re-validated here.
    body = await service.account_view(db, principal, account_id, limit=limit, cursor=cursor)
    return Response(body, media_type="application/json")


@router.post(
    "/accounts/{account_id}/redemptions",
    status_code=202,
    response_model=Redemption,
    responses=problem_responses(*COMMON_PROBLEMS, 402, 403, 404, 409),
)
async def redeem_cashback(
    account_id: UUID,
    redemption: RedemptionIn,
    principal: CustomerPrincipal,
    key: IdempotencyKey,
    db: Db,
    relay: Relay,
    request: Request,
) -> Response:
    outcome = await service.redeem(db, principal, account_id, redemption, key, request.url.path)
    if outcome.status == 202 and not outcome.replayed:
        relay.wake()  # the event leaves now, not at the next poll
    return outcome.response()


@router.get(
    "/redemptions/{redemption_id}", response_model=Redemption, responses=problem_responses(*COMMON_PROBLEMS, 403, 404)
)
async def get_redemption(redemption_id: UUID, principal: CustomerOrAdmin, db: Db) -> Any:
    return await service.get_redemption(db, principal, redemption_id)
