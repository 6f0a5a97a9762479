"""The partners service: ``uvicorn newbank.partners.main:app``."""

from __future__ import annotations

from fastapi import FastAPI

from newbank.partners.cache import PartnerCache
from newbank.partners.consumers import MERCHANT_EVENTS, offer_changed_listener
from newbank.partners.dependencies import CACHE_KEY
from newbank.partners.router import router
from newbank.service_app import ServiceContext, ServiceSpec, create_service_app
from newbank.settings import Settings, get_settings


async def _start_cache(ctx: ServiceContext) -> None:
    cache = PartnerCache(ttl_s=ctx.settings.partners_cache_ttl_s)
    ctx.extras[CACHE_KEY] = cache
    ctx.broker.on_connected(offer_changed_listener(cache, ctx.settings.exchange))


def build_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="partners",
        database="cashback",
        title="NewBank partners service",
        routers=[router],
        consumers=[MERCHANT_EVENTS],
        on_startup=[_start_cache],
    )
    return create_service_app(spec, settings or get_settings())


app = build_app()
