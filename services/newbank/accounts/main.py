"""The accounts service's ASGI app: ``uvicorn newbank.accounts.main:app``."""

from __future__ import annotations

from fastapi import FastAPI

from newbank.accounts.consumers import consumers
from newbank.accounts.housekeeping import start_housekeeping
from newbank.accounts.router import internal_router, router
from newbank.accounts.service import make_key_resolver
from newbank.service_app import ServiceSpec, create_service_app
from newbank.settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        ServiceSpec(
            name="accounts",
            database="bank",
            title="NewBank accounts service",
            routers=[router, internal_router],
            consumers=consumers(),
            key_resolver=make_key_resolver,
            on_startup=[start_housekeeping],
        ),
        settings,
    )


app = build_app()
