"""The after-run checks every chaos scenario ends with — read from the databases and the public API.

1. every payment acknowledged with a 201 exists in the bank database under the id it was answered
   with, with balanced postings for its amount — and answers GET through the API;
2. no payment was applied twice: one payment row per Idempotency-Key (the key is the ``reference``);
3. ``newbank ledger verify`` passes;
4. every acknowledged payment's cashback is settled exactly once: one cashback entry, earned by the
   rule, status ``credited`` (or ``none`` without an offer), the same status on the payment, and each
   cashback account's balance equal to the sum of its entries;
5. no process is left behind (a killed PID still alive, a process nobody owns).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from newbank.chaos.health import strays
from newbank.chaos.load import PaymentLoad
from newbank.chaos.world import Target, World


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    applied_unanswered: int = 0  # keys the client gave up on that did take effect (once)
    last_cashback_at: float | None = None  # wall clock of the newest cashback entry of the run
    settle_s: float = 0.0

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


async def _connect(dsn: str) -> asyncpg.Connection:
    for attempt in range(30):  # the primary may be moving right after a run
        try:
            return await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError):
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


async def wait_cashback_settled(target: Target, ids: list[str], timeout_s: float) -> tuple[int, float]:
    """Wait until every payment has its cashback entry and the bank shows a settled status.

    Returns (still pending, seconds waited).
    """
    t0 = time.monotonic()
    pending = len(ids)
    while True:
        bank, cashback = await _connect(target.bank_dsn()), await _connect(target.cashback_dsn())
        try:
            entries = await cashback.fetchval(
                "SELECT count(*) FROM cashback_entry WHERE payment_id = ANY($1::uuid[])", ids
            )
            unsettled = await bank.fetchval(
                "SELECT count(*) FROM payment WHERE id = ANY($1::uuid[]) AND cashback_status = 'pending'", ids
            )
            pending = max(len(ids) - entries, unsettled)
        finally:
            await bank.close()
            await cashback.close()
        if pending == 0 or time.monotonic() - t0 > timeout_s:
            return pending, time.monotonic() - t0
        await asyncio.sleep(0.5)


async def _check_bank(verdict: Verdict, target: Target, load: PaymentLoad) -> dict[str, dict[str, Any]]:
    conn = await _connect(target.bank_dsn())
    try:
        rows = await conn.fetch(
            "SELECT id::text, reference, merchant_id::text, account_id::text, amount, debited_amount, cashback_status,"
            " cashback_amount FROM payment WHERE reference = ANY($1::text[])",
            [o.key for o in load.orders],
        )
        acked_ids = [o.payment_id for o in load.acknowledged]
        postings = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT journal_entry_id::text AS id, count(*) AS n, sum(amount) AS total, sum(abs(amount)) AS moved"
                "  FROM posting WHERE journal_entry_id = ANY($1::uuid[]) GROUP BY journal_entry_id",
                acked_ids,
            )
        }
    finally:
        await conn.close()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["reference"], []).append(dict(row))
    duplicates = {k: v for k, v in by_key.items() if len(v) > 1}
    verdict.duplicates = sum(len(v) - 1 for v in duplicates.values())
    lost, wrong, unbalanced = [], [], []
    for order in load.acknowledged:
        found = by_key.get(order.key, [])
        if not any(r["id"] == order.payment_id for r in found):
            history = [
                (round(a.sent - load.started_at, 1), round(a.done - load.started_at, 1), a.outcome)
                for a in order.attempts
            ]
            lost.append(
                f"{order.key} → {order.payment_id} (rows: {[r['id'] for r in found]}; attempts s from "
                f"load start: {history})"
            )
            continue
        row = next(r for r in found if r["id"] == order.payment_id)
        made = (order.merchant_id, order.account_id, order.amount)
        if (row["merchant_id"], row["account_id"], row["amount"]) != made:
            wrong.append(order.key)
        post = postings.get(order.payment_id)
        if post is None or post["n"] < 2 or post["total"] != 0 or post["moved"] != 2 * row["debited_amount"]:
            unbalanced.append(f"{order.payment_id}: {dict(post) if post else 'no postings'}")
        if len(order.ids_seen) > 1:
            wrong.append(f"{order.key} answered with several payment ids {sorted(order.ids_seen)}")
    verdict.lost = len(lost)
    n = len(load.acknowledged)
    verdict.add(
        "every acknowledged payment in the database",
        not lost,
        f"{n - len(lost)} of {n} found" + (f"; lost: {lost[:5]}" if lost else ""),
    )
    verdict.add(
        "one payment per Idempotency-Key",
        not duplicates and not wrong,
        f"{len(rows)} rows for {len(by_key)} keys"
        + (f"; duplicated: {list(duplicates)[:5]}" if duplicates else "")
        + (f"; wrong: {wrong[:5]}" if wrong else ""),
    )
    verdict.add(
        "postings of every acknowledged payment balance",
        not unbalanced,
        f"{n - len(unbalanced)} of {n}" + (f"; {unbalanced[:3]}" if unbalanced else ""),
    )
    unanswered = {o.key for o in load.unresolved}
    verdict.applied_unanswered = sum(1 for k in unanswered if k in by_key)
    return {rows[0]["id"]: rows[0] for rows in by_key.values()}


async def _check_api(
    verdict: Verdict, target: Target, load: PaymentLoad, around: tuple[float, float], sample: int = 300
) -> None:
    """GET through the ingress: the payments acknowledged closest to the fault and to the recovery
    (where a wrong answer would come from), plus a random sample of the rest. The database check
    already covers every one of them."""
    acked = load.acknowledged
    by_distance = sorted(acked, key=lambda o: min(abs((o.acked_at or 0) - t) for t in around))
    near = by_distance[:sample]
    rest = by_distance[sample:]
    chosen = near + random.Random(7).sample(rest, min(sample, len(rest)))
    gate = asyncio.Semaphore(16)
    bad: list[str] = []
    async with httpx.AsyncClient(
        base_url=target.base_url, timeout=15, headers={"Authorization": f"Bearer {target.admin_token}"}
    ) as client:

        async def get(order: Any) -> None:
            async with gate:
                for _ in range(5):
                    try:
                        response = await client.get(f"/api/v1/payments/{order.payment_id}")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.5)
                else:
                    bad.append(f"{order.payment_id}: unreachable")
                    return
            if response.status_code != 200 or response.json().get("reference") != order.key:
                bad.append(f"{order.payment_id}: {response.status_code} {response.text[:120]}")

        await asyncio.gather(*(get(o) for o in chosen))
    verdict.add(
        "acknowledged payments answer GET /api/v1/payments/{id}",
        not bad,
        f"{len(chosen) - len(bad)} of {len(chosen)} ({len(near)} acknowledged around the fault)"
        + (f"; {bad[:3]}" if bad else ""),
    )


async def _check_cashback(
    verdict: Verdict, target: Target, world: World, load: PaymentLoad, payments: dict[str, dict[str, Any]]
) -> None:
    ids = [o.payment_id for o in load.acknowledged]
    conn = await _connect(target.cashback_dsn())
    try:
        entries = {
            r["payment_id"]: r
            for r in await conn.fetch(
                "SELECT payment_id::text, status, earned, reversed_amount, rate_bps, debited_amount, created_at"
                "  FROM cashback_entry WHERE payment_id = ANY($1::uuid[])",
                ids,
            )
        }
        balances = await conn.fetch(
            "SELECT a.account_id::text, a.balance,"
            "       (SELECT coalesce(sum(e.earned - e.reversed_amount), 0) FROM cashback_entry e"
            "         WHERE e.account_id = a.account_id AND e.status <> 'none') AS entries,"
            "       (SELECT coalesce(sum(r.amount), 0) FROM cashback_redemption r"
            "         WHERE r.account_id = a.account_id) AS redeemed"
            "  FROM cashback_account a WHERE a.account_id = ANY($1::uuid[])",
            [a.id for a in world.accounts],
        )
        world_entries = {
            r["payment_id"]
            for r in await conn.fetch(
                "SELECT payment_id::text FROM cashback_entry WHERE account_id = ANY($1::uuid[])",
                [a.id for a in world.accounts],
            )
        }
    finally:
        await conn.close()
    bank = await _connect(target.bank_dsn())
    try:
        world_payments = {
            r["id"]
            for r in await bank.fetch(
                "SELECT id::text FROM payment WHERE account_id = ANY($1::uuid[])", [a.id for a in world.accounts]
            )
        }
    finally:
        await bank.close()
    phantom = sorted(world_entries - world_payments)
    verdict.add(
        "no cashback for a payment the bank does not have",
        not phantom,
        f"{len(world_entries)} entries" + (f"; {len(phantom)} phantom: {phantom[:3]}" if phantom else ""),
    )
    wrong: list[str] = []
    for order in load.acknowledged:
        entry, payment = entries.get(order.payment_id), payments.get(order.payment_id)
        if entry is None or payment is None:
            wrong.append(f"{order.payment_id}: no cashback entry")
            continue
        rate = world.rate_of(order.merchant_id)
        earned = payment["debited_amount"] * rate // 10_000
        want = "credited" if earned > 0 else "none"
        if entry["earned"] != earned or entry["status"] != want:
            wrong.append(f"{order.payment_id}: entry {entry['status']} {entry['earned']}, expected {want} {earned}")
        elif payment["cashback_status"] != want:
            wrong.append(f"{order.payment_id}: payment shows cashback {payment['cashback_status']}, entry {want}")
    off = [
        f"{b['account_id']}: balance {b['balance']} vs entries {b['entries']} - redeemed {b['redeemed']}"
        for b in balances
        if b["balance"] != b["entries"] - b["redeemed"]
    ]
    verdict.add(
        "cashback credited exactly once per payment",
        not wrong,
        f"{len(ids) - len(wrong)} of {len(ids)} right" + (f"; {wrong[:3]}" if wrong else ""),
    )
    verdict.add(
        "cashback balances equal their entries", not off, f"{len(balances)} accounts" + (f"; {off[:3]}" if off else "")
    )
    if entries:
        verdict.last_cashback_at = max(e["created_at"] for e in entries.values()).timestamp()


def ledger_verify(target: Target) -> tuple[bool, str]:
    """``newbank ledger verify`` itself, as an operator would run it."""
    cmd = [sys.executable, "-m", "newbank.cli", "ledger", "verify", "--database-url", target.bank_dsn()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode == 0, " / ".join(lines[:1] + lines[-1:]) if lines else f"exit {result.returncode}"


async def run_checks(
    target: Target,
    world: World,
    load: PaymentLoad,
    *,
    around: tuple[float, float],
    killed: list[int],
    settle_timeout_s: float = 90,
) -> Verdict:
    verdict = Verdict()
    ids = [o.payment_id for o in load.acknowledged if o.payment_id]
    pending, verdict.settle_s = await wait_cashback_settled(target, ids, settle_timeout_s)
    verdict.add(
        "cashback settled",
        pending == 0,
        f"all {len(ids)} in {verdict.settle_s:.1f} s" if not pending else f"{pending} still pending",
    )
    payments = await _check_bank(verdict, target, load)
    await _check_api(verdict, target, load, around)
    await _check_cashback(verdict, target, world, load, payments)
    ok, line = await asyncio.to_thread(ledger_verify, target)
    verdict.add("newbank ledger verify", ok, line)
    left = await asyncio.to_thread(strays, target.layout, killed)
    verdict.add("no process left behind", not left, "none" if not left else "; ".join(left[:5]))
    return verdict
