"""Annotated dependencies of the cashback routers (``async def``: no worker-thread hop per request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from newbank.database import Database
from newbank.messaging.outbox import OutboxRelay


async def get_db(request: Request) -> Database:
    return request.app.state.ctx.db


async def get_relay(request: Request) -> OutboxRelay:
    return request.app.state.ctx.relay


Db = Annotated[Database, Depends(get_db)]
Relay = Annotated[OutboxRelay, Depends(get_relay)]
