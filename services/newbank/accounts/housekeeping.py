"""Forgetting stored idempotent answers once they are old enough (API.md keeps them at least 24 h).

The accounts service does it for the whole bank database (the transaction service's keys included):
one small batch at a time, so the delete never holds many row locks or a long transaction.
"""

from __future__ import annotations

import asyncio
import logging

from newbank.accounts import queries
from newbank.service_app import ServiceContext

log = logging.getLogger("newbank.accounts.housekeeping")


async def prune_idempotency_keys(ctx: ServiceContext, batch: int = 5_000) -> int:
    retention_h = max(24, ctx.settings.idempotency_retention_h)  # never below the contract
    total = 0
    while True:
        status = await ctx.db.primary.execute(queries.PRUNE_IDEMPOTENCY_KEYS, retention_h, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def _housekeeping_loop(ctx: ServiceContext, interval_s: float = 300.0) -> None:
    while True:
        try:
            deleted = await prune_idempotency_keys(ctx)
            if deleted:
                log.info("idempotency keys pruned", extra={"deleted": deleted})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be failing over; try again next round
            log.warning("idempotency key pruning skipped: %r", exc)
        await asyncio.sleep(interval_s)


async def start_housekeeping(ctx: ServiceContext) -> None:
    ctx.spawn(_housekeeping_loop(ctx), "idempotency-housekeeping")
