"""What the asynchronous pipeline does with a backlog, and what it costs per payment.

While the services are paused for the database ceiling, its payments pile up in the bank's outbox.
When the services run again, the relay publishes them, the cashback service credits each one (or finds
no offer) and the transaction instances record that outcome on the payment. The time until none of
them is ``pending`` any more, and the CPU each part of the platform spent meanwhile, say what that
pipeline (relay → RabbitMQ → cashback → RabbitMQ → transactions, with both databases' writes) costs per
payment with nothing else running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from loadtest.cpu import CpuWindow

NIL = UUID(int=0)

# Payment ids are time-ordered (migrations/common/0005), so "made after this one" is a range of the
# primary key, whatever the table's size.
_BACKLOG_SQL = """
SELECT count(*) AS made, count(*) FILTER (WHERE cashback_status = 'pending') AS pending
  FROM payment WHERE id > $1
"""


@dataclass
class Drain:
    """The payments made after a mark, and how long and how much CPU their cashback took to settle."""

    payments: int
    pending: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # cores per group over ``seconds``

    @property
    def settled(self) -> bool:
        return self.pending == 0

    @property
    def per_s(self) -> float:
        return self.payments / self.seconds if self.seconds > 0 else 0.0

    def ms_per_payment(self, group: str = "machine") -> float:
        """CPU milliseconds that ``group`` spent per payment settled."""
        return 1000 * self.cpu.get(group, 0.0) * self.seconds / self.payments if self.payments else float("nan")

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"settled": self.settled, "per_s": self.per_s}


async def newest_payment_id(dsn: str) -> UUID:
    """The mark: the newest payment now (the nil id on an empty table)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT id FROM payment ORDER BY id DESC LIMIT 1") or NIL
    finally:
        await conn.close()


async def wait_settled(
    dsn: str, after: UUID, groups: dict[str, Callable[[], Iterable[int]]], *, timeout_s: float, poll_s: float = 0.5
) -> Drain:
    """Poll until every payment made after ``after`` has its cashback outcome, or ``timeout_s`` passed."""
    window = CpuWindow(groups)
    window.start()
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            row = await conn.fetchrow(_BACKLOG_SQL, after)
            elapsed = time.monotonic() - started
            if row["pending"] == 0 or elapsed >= timeout_s:
                return Drain(int(row["made"]), int(row["pending"]), elapsed, window.stop())
            await asyncio.sleep(poll_s)
    finally:
        await conn.close()


def format_drain(drain: Drain) -> str:
    """One line for the benchmark's output."""
    if not drain.payments:
        return "pipeline: no payment to settle"
    state = "settled" if drain.settled else f"NOT settled ({drain.pending} still pending)"
    groups = [name for name in sorted(drain.cpu) if name != "machine" and drain.cpu[name]]
    parts = ", ".join(f"{name} {drain.ms_per_payment(name):.2f}" for name in groups)
    return (
        f"pipeline: the ceiling's {drain.payments} payments' cashback {state} in {drain.seconds:.1f} s"
        f" ({drain.per_s:.1f}/s); ms CPU per payment: machine {drain.ms_per_payment():.2f} ({parts})"
    )
