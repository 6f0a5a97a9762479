"""Ledger verification: the stored balances and the journal, checked against the postings.

Three questions, each one SQL statement over the whole bank database (consistent, because they run
in one REPEATABLE READ read-only transaction):
- does every customer and settlement account's stored balance equal the sum of its postings?
- does every journal entry sum to zero in each currency (and have at least two postings)?
- is every posting in its account's currency?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

BALANCE_DIFFERENCES = """
SELECT a.id, a.kind, a.currency, a.balance AS stored, coalesce(s.total, 0)::bigint AS computed
  FROM account a
  LEFT JOIN (SELECT account_id, sum(amount) AS total FROM posting GROUP BY account_id) s ON s.account_id = a.id
 WHERE a.kind <> 'system' AND a.balance IS DISTINCT FROM coalesce(s.total, 0)
 ORDER BY a.id
"""

UNBALANCED_ENTRIES = """
SELECT j.id, j.kind, p.currency, coalesce(sum(p.amount), 0)::bigint AS total, count(p.id) AS postings
  FROM journal_entry j LEFT JOIN posting p ON p.journal_entry_id = j.id
 GROUP BY j.id, j.kind, p.currency
HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) < 2
 ORDER BY j.id
"""

FOREIGN_CURRENCY_POSTINGS = """
SELECT p.id, p.account_id, p.currency AS posting_currency, a.currency AS account_currency
  FROM posting p JOIN account a ON a.id = p.account_id
 WHERE p.currency <> a.currency
 ORDER BY p.id
"""

TOTALS = """
SELECT (SELECT count(*) FROM account WHERE kind <> 'system') AS accounts,
       (SELECT count(*) FROM account WHERE kind = 'system') AS system_accounts,
       (SELECT count(*) FROM journal_entry) AS journal_entries,
       (SELECT count(*) FROM posting) AS postings
"""

# What the bank's customers and merchants hold, per currency (the bank's own accounts hold the rest).
HELD_PER_CURRENCY = """
SELECT currency, sum(balance)::bigint AS held FROM account WHERE kind <> 'system'
 GROUP BY currency ORDER BY currency
"""


@dataclass
class LedgerReport:
    accounts: int = 0
    system_accounts: int = 0
    journal_entries: int = 0
    postings: int = 0
    held_per_currency: dict[str, int] = field(default_factory=dict)
    balance_differences: list[dict[str, Any]] = field(default_factory=list)
    unbalanced_entries: list[dict[str, Any]] = field(default_factory=list)
    foreign_currency_postings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.balance_differences or self.unbalanced_entries or self.foreign_currency_postings)

    def summary(self, shown: int = 10) -> str:
        lines = [
            f"ledger: {self.accounts} accounts (+{self.system_accounts} bank accounts), "
            f"{self.journal_entries} journal entries, {self.postings} postings",
        ]
        if self.held_per_currency:
            held = ", ".join(f"{cur} {amount}" for cur, amount in self.held_per_currency.items())
            lines.append(f"held by customers and merchants (minor units): {held}")
        for title, rows in (
            ("stored balance differs from its postings", self.balance_differences),
            ("journal entry does not sum to zero", self.unbalanced_entries),
            ("posting not in its account's currency", self.foreign_currency_postings),
        ):
            if rows:
                lines.append(f"FAIL {len(rows)} × {title}:")
                lines += [f"  {row}" for row in rows[:shown]]
                if len(rows) > shown:
                    lines.append(f"  ... and {len(rows) - shown} more")
        lines.append("OK: every balance matches its postings, every entry sums to zero" if self.ok else "FAILED")
        return "\n".join(lines)


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{key: (str(value) if key == "id" else value) for key, value in record.items()} for record in records]


async def verify(conn: asyncpg.Connection) -> LedgerReport:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(TOTALS)
        report = LedgerReport(**dict(totals))
        report.held_per_currency = {row["currency"]: row["held"] for row in await conn.fetch(HELD_PER_CURRENCY)}
        report.balance_differences = _rows(await conn.fetch(BALANCE_DIFFERENCES))
        report.unbalanced_entries = _rows(await conn.fetch(UNBALANCED_ENTRIES))
        report.foreign_currency_postings = _rows(await conn.fetch(FOREIGN_CURRENCY_POSTINGS))
    return report


async def verify_dsn(dsn: str) -> LedgerReport:
    conn = await asyncpg.connect(dsn, timeout=10.0)
    try:
        return await verify(conn)
    finally:
        await conn.close()
