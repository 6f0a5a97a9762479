"""Annotated dependencies of the partners routers.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, and
on the cached read path those thread hops cost more than everything else together.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from newbank.database import Database
from newbank.partners.cache import PartnerCache

CACHE_KEY = "partner_cache"


async def get_db(request: Request) -> Database:
    return request.app.state.ctx.db


async def get_cache(request: Request) -> PartnerCache:
    return request.app.state.ctx.extras[CACHE_KEY]


Db = Annotated[Database, Depends(get_db)]
Cache = Annotated[PartnerCache, Depends(get_cache)]
