"""HTTP routes of the transaction service (API.md "Bank — transaction service").

Payment bodies come from the database as JSON already (``payment_json``), so they are sent as they
are: the hot path parses one request model and serialises nothing twice.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from fastapi.routing import APIRoute

from newbank.auth import CurrentPrincipal, MerchantOrAdmin
from newbank.errors import COMMON_PROBLEMS, problem_responses
from newbank.service_app import Context
from newbank.transactions import service
from newbank.transactions.dependencies import MerchantMoney, Page
from newbank.transactions.schemas import Payment, PaymentCreate, PaymentPage, Refund, RefundCreate

router = APIRouter(prefix="/api/v1", tags=["bank: transactions"])


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/payments",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": Payment, "description": "the payment"},
        **problem_responses(*COMMON_PROBLEMS, 402, 403, 404, 409),
    },
)
async def make_payment(call: MerchantMoney, body: PaymentCreate) -> Response:
    outcome = await service.make_payment(call.ctx.db, call.merchant, call.idempotency_key, body)
    if outcome.status == 201 and not outcome.replayed:
        call.ctx.relay.wake()
    return outcome.response()


@router.get(
    "/payments",
    response_model=None,
    responses={200: {"model": PaymentPage, "description": "newest first"}, **problem_responses(*COMMON_PROBLEMS, 403)},
)
async def list_payments(ctx: Context, principal: MerchantOrAdmin, page: Page) -> Response:
    return _json(await service.list_payments(ctx.db, principal, page.limit, page.cursor))


@router.get(
    "/payments/{payment_id}",
    response_model=None,
    responses={200: {"model": Payment, "description": "the payment"}, **problem_responses(*COMMON_PROBLEMS, 404)},
)
async def get_payment(ctx: Context, principal: CurrentPrincipal, payment_id: UUID) -> Response:
    return _json(await service.get_payment(ctx.db, principal, payment_id))


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": Refund, "description": "the refund"},
        **problem_responses(*COMMON_PROBLEMS, 402, 403, 404, 409),
    },
)
async def make_refund(call: MerchantMoney, payment_id: UUID, body: RefundCreate) -> Response:
    outcome = await service.make_refund(call.ctx.db, call.merchant, call.idempotency_key, payment_id, body)
    if outcome.status == 201 and not outcome.replayed:
        call.ctx.relay.wake()
    return outcome.response()


# The route ``payment_fast_path`` answers for on the hot path (metrics name its requests after it).
PAYMENT_ROUTE = next(
    route
    for route in router.routes
    if isinstance(route, APIRoute) and route.path == service.PAYMENTS_PATH and "POST" in route.methods
)
