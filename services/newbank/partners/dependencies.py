"""Annotated dependencies of the partners routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from newbank.database import Database
from newbank.partners.cache import PartnerCache
from newbank.service_app import Context

CACHE_KEY = "partner_cache"


def get_db(ctx: Context) -> Database:
    return ctx.db


def get_cache(ctx: Context) -> PartnerCache:
    return ctx.extras[CACHE_KEY]


Db = Annotated[Database, Depends(get_db)]
Cache = Annotated[PartnerCache, Depends(get_cache)]
