"""Forgetting inbox rows once no repeat of their event can still arrive.

A repeat comes from the broker (a delivery that was not acknowledged: redelivered at once) or from an
outbox re-drive (events published in the last ``redrive_margin_s`` before a broker lost its data; the
outbox itself deletes published rows after an hour). An inbox row older than ``inbox_retention_h``
(48 h by default, never below 2 h) will not meet its event again, and keeping it would grow the table
by one row per event and consumer for ever. Each service prunes the rows of its own consumers, one
small batch at a time, so the delete never holds many locks or a long transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from newbank.database import Database
from newbank.pruning import PRUNE_BATCH, delete_in_batches, prune_every

log = logging.getLogger("newbank.inbox")

MIN_RETENTION_H = 2.0

_PRUNE_SQL = """
DELETE FROM inbox_event i
 USING (SELECT consumer, event_id FROM inbox_event
         WHERE consumer = ANY($1::text[]) AND processed_at < now() - make_interval(secs => $2)
         LIMIT $3) old
 WHERE i.consumer = old.consumer AND i.event_id = old.event_id
"""


async def prune_inbox(db: Database, consumers: Sequence[str], retention_h: float, batch: int = PRUNE_BATCH) -> int:
    """Delete the inbox rows of ``consumers`` older than the retention; returns how many."""
    seconds = max(MIN_RETENTION_H, retention_h) * 3600
    return await delete_in_batches(db.primary, _PRUNE_SQL, list(consumers), seconds, batch=batch)


async def inbox_pruning_loop(db: Database, consumers: Sequence[str], retention_h: float) -> None:
    await prune_every(lambda: prune_inbox(db, consumers, retention_h), "inbox rows", log)
