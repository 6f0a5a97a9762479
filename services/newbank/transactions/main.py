"""The transaction service's ASGI app: ``uvicorn newbank.transactions.main:app``."""

from __future__ import annotations

from fastapi import FastAPI

from newbank.service_app import ServiceSpec, create_service_app
from newbank.settings import Settings
from newbank.transactions.consumers import consumers
from newbank.transactions.payment_fast_path import PaymentFastPath
from newbank.transactions.router import PAYMENT_ROUTE, router


def build_app(settings: Settings | None = None) -> FastAPI:
    # No key_resolver: keys are the accounts service's; this one introspects them (cached).
    return create_service_app(
        ServiceSpec(
            name="transactions",
            database="bank",
            title="NewBank transaction service",
            routers=[router],
            consumers=consumers(),
            fast_paths=[(PaymentFastPath, {"route": PAYMENT_ROUTE})],
        ),
        settings,
    )


app = build_app()
