"""Annotated dependencies of the cashback routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from newbank.database import Database
from newbank.service_app import Context


def get_db(ctx: Context) -> Database:
    return ctx.db


Db = Annotated[Database, Depends(get_db)]
