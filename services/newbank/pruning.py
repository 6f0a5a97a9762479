"""Forgetting old rows (stored idempotent answers, inbox rows) without hurting the traffic.

A prune deletes one small batch at a time, so it never holds many row locks or a long transaction, and
runs again every few minutes; a round that fails (the database failing over) is simply retried next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg


async def delete_in_batches(pool: asyncpg.Pool, sql: str, *args: Any, batch: int) -> int:
    """Run ``sql`` (a DELETE whose last parameter is the batch size) until a batch comes back short."""
    total = 0
    while True:
        status = await pool.execute(sql, *args, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def prune_every(
    job: Callable[[], Awaitable[int]], what: str, log: logging.Logger, interval_s: float = 300.0
) -> None:
    """Run ``job`` (returns how many rows it deleted) now and every ``interval_s``, for ever."""
    while True:
        try:
            deleted = await job()
            if deleted:
                log.info("%s pruned", what, extra={"deleted": deleted})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be failing over; try again next round
            log.warning("%s pruning skipped: %r", what, exc)
        await asyncio.sleep(interval_s)
