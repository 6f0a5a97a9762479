"""The cashback service: ``uvicorn newbank.cashback.main:app``."""

from __future__ import annotations

from fastapi import FastAPI

from newbank.cashback.consumers import BANK_EVENTS, PAYMENT_EVENTS
from newbank.cashback.router import router
from newbank.service_app import ServiceSpec, create_service_app
from newbank.settings import Settings, get_settings


def build_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="cashback",
        database="cashback",
        title="NewBank cashback service",
        routers=[router],
        consumers=[PAYMENT_EVENTS, BANK_EVENTS],
    )
    return create_service_app(spec, settings or get_settings())


app = build_app()
