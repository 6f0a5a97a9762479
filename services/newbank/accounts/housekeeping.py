"""Forgetting stored idempotent answers once they are old enough (API.md keeps them at least 24 h).

The accounts service does it for the whole bank database (the transaction service's keys included):
one small batch at a time, so the delete never holds many row locks or a long transaction.
"""

from __future__ import annotations

import logging

from newbank.accounts import queries
from newbank.pruning import PRUNE_BATCH, delete_in_batches, prune_every
from newbank.service_app import ServiceContext

log = logging.getLogger("newbank.accounts.housekeeping")


async def prune_idempotency_keys(ctx: ServiceContext, batch: int = PRUNE_BATCH) -> int:
    retention_h = max(24, ctx.settings.idempotency_retention_h)  # never below the contract
    return await delete_in_batches(ctx.db.primary, queries.PRUNE_IDEMPOTENCY_KEYS, retention_h, batch=batch)


async def start_housekeeping(ctx: ServiceContext) -> None:
    ctx.spawn(prune_every(lambda: prune_idempotency_keys(ctx), "idempotency keys", log), "idempotency-housekeeping")
