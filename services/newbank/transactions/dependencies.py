"""Request-scoped pieces of the transaction service: the caller of a money-moving request, page
parameters of lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from newbank.auth import Principal, require_principal
from newbank.errors import ProblemError
from newbank.idempotency import idempotency_key_header
from newbank.service_app import ServiceContext


@dataclass(frozen=True, slots=True)
class MerchantMoneyRequest:
    ctx: ServiceContext
    merchant: Principal
    idempotency_key: str


async def merchant_money_request(
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> MerchantMoneyRequest:
    """Context, merchant key and Idempotency-Key as ONE dependency.

    FastAPI's per-request cost grows with every dependency it solves (about a third of the
    payment's in-process CPU went to ``solve_dependencies`` with four of them); payments are the hot
    path. Same checks, same order as the separate dependencies: 401, 403, then 400 for the key.
    """
    principal = await require_principal(request)
    if principal.kind != "merchant":
        raise ProblemError(403, "forbidden", "this operation needs a merchant key")
    key = await idempotency_key_header(idempotency_key)
    return MerchantMoneyRequest(request.app.state.ctx, principal, key)


MerchantMoney = Annotated[MerchantMoneyRequest, Depends(merchant_money_request)]


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None


async def page_request(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor or None)


Page = Annotated[PageRequest, Depends(page_request)]
