"""Pruning rests between full batches in proportion to their duration, and stops at a short batch.

The DELETEs themselves run against real PostgreSQL in the inbox and idempotency-key tests; here the pool
only answers how many rows each batch took, so the pacing can be timed exactly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from newbank import pruning
from newbank.observability import ROWS_PRUNED


class Clock:
    now = 100.0

    def monotonic(self) -> float:
        return self.now


class Backlog:
    """Answers ``DELETE n`` like PostgreSQL would for a table holding ``rows`` old rows; each batch takes
    ``seconds_per_batch`` on ``clock``."""

    def __init__(self, rows: int, seconds_per_batch: float, clock: Clock | None = None) -> None:
        self.rows = rows
        self.seconds_per_batch = seconds_per_batch
        self.clock = clock or Clock()
        self.calls: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append(args)
        self.clock.now += self.seconds_per_batch
        taken = min(self.rows, args[-1])
        self.rows -= taken
        return f"DELETE {taken}"


async def test_a_backlog_goes_in_batches_with_rests_proportional_to_their_time(monkeypatch: Any) -> None:
    clock = Clock()
    rests: list[float] = []

    async def sleep(seconds: float) -> None:
        rests.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(pruning.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(pruning.asyncio, "sleep", sleep)
    backlog = Backlog(rows=2_500, seconds_per_batch=0.25, clock=clock)
    deleted = await pruning.delete_in_batches(backlog, "DELETE …", "arg", batch=1_000, pause_factor=4.0)  # type: ignore[arg-type]
    assert deleted == 2_500 and backlog.rows == 0
    assert backlog.calls == [("arg", 1_000)] * 3  # the third came back short: done
    assert rests == [1.0, 1.0]  # 4 × 0.25 s after each full batch, none after the last
    assert clock.now - 100.0 == pytest.approx(3 * 0.25 + 2 * 1.0)  # the deletes used 0.75 s of 2.75


async def test_nothing_old_is_one_statement_and_no_rest() -> None:
    backlog = Backlog(rows=0, seconds_per_batch=0.0)
    assert await pruning.delete_in_batches(backlog, "DELETE …", batch=1_000) == 0  # type: ignore[arg-type]
    assert len(backlog.calls) == 1


async def test_each_round_counts_what_it_deleted_and_a_failed_round_is_retried(monkeypatch: Any) -> None:
    outcomes: list[Any] = [7, RuntimeError("failing over"), 3]
    rounds: list[int] = []

    async def job() -> int:
        outcome = outcomes[len(rounds)]
        rounds.append(len(rounds))
        if isinstance(outcome, Exception):
            raise outcome
        return int(outcome)

    async def sleep(seconds: float) -> None:
        assert seconds == pruning.PRUNE_INTERVAL_S
        if len(rounds) == len(outcomes):
            raise asyncio.CancelledError

    before = ROWS_PRUNED.labels("test rows")._value.get()
    monkeypatch.setattr(pruning.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await pruning.prune_every(job, "test rows", logging.getLogger("test"))
    assert len(rounds) == 3
    assert ROWS_PRUNED.labels("test rows")._value.get() - before == 10
