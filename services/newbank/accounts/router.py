"""HTTP routes of the accounts service (API.md "Bank — accounts service"); the logic is in service.py."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from newbank.accounts import service
from newbank.accounts.dependencies import AdminCaller, BaseCurrency, ClientAddress, KeyResolverDep, QuoteCurrency
from newbank.accounts.schemas import (
    Account,
    AccountCreate,
    CustomerCreate,
    CustomerCreated,
    Deposit,
    DepositCreate,
    FxRate,
    FxRateSet,
    IntrospectionRequest,
    Introspections,
    Merchant,
    MerchantCreate,
    MerchantCreated,
)
from newbank.auth import AdminPrincipal, CurrentPrincipal, CustomerOrAdmin, MerchantPrincipal
from newbank.errors import COMMON_PROBLEMS, problem_responses
from newbank.idempotency import IdempotencyKey
from newbank.service_app import Context

router = APIRouter(prefix="/api/v1", tags=["bank: accounts"])
internal_router = APIRouter(prefix="/internal", include_in_schema=False)


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerCreated,
    responses=problem_responses(*COMMON_PROBLEMS, 403),
)
async def create_customer(ctx: Context, _: AdminPrincipal, body: CustomerCreate) -> dict[str, Any]:
    return await service.create_customer(ctx.db, body)


@router.post(
    "/accounts",
    status_code=201,
    response_model=Account,
    responses=problem_responses(*COMMON_PROBLEMS, 403, 404),
)
async def open_account(ctx: Context, _: AdminPrincipal, body: AccountCreate) -> dict[str, Any]:
    account = await service.open_account(ctx.db, body)
    ctx.relay.wake()
    return account


@router.get(
    "/accounts/{account_id}",
    response_model=Account,
    responses=problem_responses(*COMMON_PROBLEMS, 403, 404),
)
async def get_account(ctx: Context, principal: CustomerOrAdmin, account_id: UUID) -> dict[str, Any]:
    return await service.get_account(ctx.db, principal, account_id)


@router.post(
    "/accounts/{account_id}/deposits",
    status_code=201,
    response_model=Deposit,
    responses=problem_responses(*COMMON_PROBLEMS, 403, 404, 409),
)
async def make_deposit(
    ctx: Context,
    principal: AdminPrincipal,
    idempotency_key: IdempotencyKey,
    request: Request,
    account_id: UUID,
    body: DepositCreate,
) -> Response:
    outcome = await service.deposit(ctx.db, principal, idempotency_key, request.url.path, account_id, body)
    return outcome.response()


@router.put(
    "/fx-rates/{base}/{quote}",
    response_model=FxRate,
    responses=problem_responses(*COMMON_PROBLEMS, 403),
)
async def set_fx_rate(
    ctx: Context, _: AdminPrincipal, base: BaseCurrency, quote: QuoteCurrency, body: FxRateSet
) -> dict[str, Any]:
    return await service.set_fx_rate(ctx.db, base, quote, body)


@router.get(
    "/fx-rates/{base}/{quote}",
    response_model=FxRate,
    responses=problem_responses(*COMMON_PROBLEMS, 404),
)
async def get_fx_rate(ctx: Context, _: CurrentPrincipal, base: BaseCurrency, quote: QuoteCurrency) -> dict[str, Any]:
    return await service.get_fx_rate(ctx.db, base, quote)


@router.post(
    "/merchants",
    status_code=201,
    response_model=MerchantCreated,
    responses=problem_responses(400, 413, 422, 429),
)
async def onboard_merchant(ctx: Context, client: ClientAddress, body: MerchantCreate) -> dict[str, Any]:
    await service.admit_onboarding(ctx.db, ctx.settings, client)
    merchant = await service.onboard_merchant(ctx.db, body)
    ctx.relay.wake()
    return merchant


@router.get("/merchants/me", response_model=Merchant, responses=problem_responses(401, 403))
async def merchant_me(ctx: Context, principal: MerchantPrincipal) -> dict[str, Any]:
    return await service.merchant_profile(ctx.db, principal.id)  # type: ignore[arg-type]


@internal_router.post("/introspect", response_model=Introspections, response_model_exclude_none=True)
async def introspect(_: AdminCaller, resolver: KeyResolverDep, body: IntrospectionRequest) -> dict[str, Any]:
    return await service.introspect(resolver, body.tokens)
