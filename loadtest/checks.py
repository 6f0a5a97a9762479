"""After the load: what the platform acknowledged must be true, checked through the public API.

1. no request was answered with a 5xx (the locust processes count every status per request name);
2. every payment answered 201 exists (GET) with the amount, account and merchant it was made with;
3. once the load has stopped and cashback has settled, every completed payment's cashback is credited
   exactly once: the payment's ``cashback`` field and the customer's cashback entries agree with the
   rule ``floor(debited_amount × rate_bps / 10000)``, and a merchant without an offer gives nothing;
4. the ledger verifies (``newbank ledger verify``).

It also measures the cashback lag (payment ``created_at`` → cashback entry ``created_at``), which
the scaling benchmark reports per point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from loadtest.report import PaymentRecord, percentile, read_records, read_status_counts, server_errors
from loadtest.setup_data import admin_token


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)
    cashback_lag_ms: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.results.append(CheckResult(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(r.ok or r.detail.startswith("skipped") for r in self.results)

    def summary(self) -> str:
        lines = [
            f"  [{'ok' if r.ok else ('--' if r.detail.startswith('skipped') else 'FAIL')}] {r.name}: {r.detail}"
            for r in self.results
        ]
        if self.cashback_lag_ms:
            lag = self.cashback_lag_ms
            lines.append(
                f"  cashback lag: p50 {lag['p50']:.0f} ms, p99 {lag['p99']:.0f} ms, max {lag['max']:.0f} ms "
                f"over {lag['n']:.0f} payments"
            )
        return "\n".join(lines)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def expected_cashback(debited_amount: int, rate_bps: int) -> int:
    """API.md's rule, in the account's currency (integer arithmetic: floor, no float)."""
    return debited_amount * rate_bps // 10_000


def judge_payment(payment: dict[str, Any], entries: list[dict[str, Any]], rate_bps: int, refunded: int) -> str | None:
    """Why this payment's cashback is wrong, or None when it is right."""
    cashback = payment.get("cashback") or {}
    status = cashback.get("status")
    expected = expected_cashback(int(payment["debited_amount"]), rate_bps)
    if rate_bps == 0 or expected == 0:
        if entries and any(int(e.get("amount", 0)) for e in entries if e.get("status") == "credited"):
            return f"no cashback due but {len(entries)} entries"
        return None if status in ("none", "credited", "reversed") else f"status {status!r} with nothing due"
    if len(entries) != 1:
        return f"{len(entries)} cashback entries, expected exactly one"
    entry = entries[0]
    earned = int(entry.get("earned", entry["amount"]))
    if earned != expected:
        return f"earned {earned}, expected {expected}"
    if refunded == 0:
        if status != "credited" or entry.get("status") != "credited":
            return f"status {status!r} / entry {entry.get('status')!r}, expected 'credited'"
        if int(entry["amount"]) != expected or int(cashback.get("amount", expected)) != expected:
            return f"credited {entry['amount']} (payment says {cashback.get('amount')}), expected {expected}"
    elif status not in ("credited", "reversed"):
        return f"refunded payment with status {status!r}"
    return None


class Checker:
    def __init__(self, client: httpx.AsyncClient, concurrency: int = 32) -> None:
        self.client = client
        self.gate = asyncio.Semaphore(concurrency)

    async def get(self, path: str, attempts: int = 6) -> tuple[int, Any]:
        """GET with patience: right after the load the platform may still be busy (a 5xx or HAProxy's
        HTML 503 page); the checks are about the data, the load's own 5xx are counted elsewhere."""
        status, body = 0, None
        async with self.gate:
            for attempt in range(attempts):
                try:
                    response = await self.client.get(path)
                except httpx.TransportError as exc:
                    status, body = 0, {"error": str(exc)}
                else:
                    status = response.status_code
                    try:
                        body = response.json() if response.content else None
                    except ValueError:
                        body = {"raw": response.text[:200]}
                    if status < 500:
                        return status, body
                await asyncio.sleep(0.5 * (attempt + 1))
        return status, body

    async def cashback_entries(self, account_id: str) -> list[dict[str, Any]]:
        """Every entry of an account, following ``next_cursor`` if the service pages them."""
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            suffix = f"&cursor={cursor}" if cursor else ""
            status, body = await self.get(f"/api/v1/cashback/accounts/{account_id}?limit=200{suffix}")
            if status != 200:
                raise RuntimeError(f"GET cashback of {account_id} → {status}: {body}")
            entries.extend(body.get("entries") or body.get("items") or [])
            cursor = body.get("next_cursor")
            if not cursor:
                return entries


async def run_checks(
    base_url: str,
    admin: str,
    results_dir: Path,
    data: dict[str, Any],
    *,
    sample: int | None = None,
    settle_timeout_s: float = 60.0,
) -> CheckReport:
    report = CheckReport()
    errors = server_errors(read_status_counts(results_dir))
    report.add("no 5xx", not errors, "none" if not errors else ", ".join(f"{k}: {v}" for k, v in errors.items()))

    records = [r for r in read_records(results_dir) if r.status == 201 and r.payment_id]
    if sample and len(records) > sample:
        records = random.Random(1).sample(records, sample)
    rates = {m["id"]: int(m["rate_bps"]) for m in data["merchants"]}
    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {admin}"},
        limits=httpx.Limits(max_connections=64),
    ) as client:
        checker = Checker(client)
        payments = await _fetch_payments(checker, records, report)
        settled = await _wait_settled(checker, payments, rates, settle_timeout_s)
        detail = f"{settled} still pending after {settle_timeout_s:.0f}s" if settled else f"all {len(payments)} settled"
        report.add("cashback settled", settled == 0, detail)
        await _check_cashback(checker, records, payments, rates, report)
    _ledger_verify(report)
    return report


async def _fetch_payments(checker: Checker, records: list[PaymentRecord], report: CheckReport) -> dict[str, dict]:
    answers = await asyncio.gather(*(checker.get(f"/api/v1/payments/{r.payment_id}") for r in records))
    payments: dict[str, dict[str, Any]] = {}
    wrong: list[str] = []
    for record, (status, body) in zip(records, answers, strict=True):
        if status != 200:
            wrong.append(f"{record.payment_id}: GET → {status}")
        elif (body["amount"], body["account_id"], body["merchant_id"]) != (
            record.amount,
            record.account_id,
            record.merchant_id,
        ):
            wrong.append(f"{record.payment_id}: differs from what was paid")
        else:
            payments[record.payment_id or ""] = body
    report.add(
        "every 201 payment exists",
        not wrong,
        f"{len(payments)} of {len(records)} found as paid" + (f"; e.g. {wrong[:3]}" if wrong else ""),
    )
    return payments


async def _wait_settled(checker: Checker, payments: dict[str, dict], rates: dict[str, int], timeout_s: float) -> int:
    """Re-read payments whose cashback is still pending until none is, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [pid for pid, p in payments.items() if (p.get("cashback") or {}).get("status") == "pending"]
        if not pending or time.monotonic() > deadline:
            return len(pending)
        await asyncio.sleep(1)
        answers = await asyncio.gather(*(checker.get(f"/api/v1/payments/{pid}") for pid in pending))
        for pid, (status, body) in zip(pending, answers, strict=True):
            if status == 200:
                payments[pid] = body


async def _entries_by_payment(checker: Checker, accounts: set[str]) -> dict[str, list[dict[str, Any]]]:
    entry_lists = await asyncio.gather(*(checker.cashback_entries(a) for a in sorted(accounts)))
    by_payment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entries in entry_lists:
        for entry in entries:
            by_payment[entry["payment_id"]].append(entry)
    return by_payment


def _judge(record: PaymentRecord, payment: dict[str, Any], entries: list[dict[str, Any]], rate_bps: int) -> str | None:
    # The payment's own refunded_amount is the truth: a refund whose answer was lost (a timeout, then
    # 503s on every retry) may have gone through. An acknowledged refund must be in it, though.
    refunded = int(payment.get("refunded_amount", record.refunded))
    if record.refunded > refunded:
        return f"refunds of {record.refunded} acknowledged, payment shows {refunded}"
    return judge_payment(payment, entries, rate_bps, refunded)


async def _check_cashback(
    checker: Checker,
    records: list[PaymentRecord],
    payments: dict[str, dict],
    rates: dict[str, int],
    report: CheckReport,
) -> None:
    by_payment = await _entries_by_payment(checker, {r.account_id for r in records if r.account_id})
    wrong: dict[str, str] = {}
    lags: list[float] = []
    for record in records:
        payment = payments.get(record.payment_id or "")
        if payment is None:
            continue
        entries = by_payment.get(payment["id"], [])
        problem = _judge(record, payment, entries, rates.get(payment["merchant_id"], 0))
        if problem:
            wrong[payment["id"]] = problem
        if len(entries) == 1:  # the entry is created when the cashback is credited
            lags.append((_ts(entries[0]["created_at"]) - _ts(payment["created_at"])) * 1000)
    if wrong:
        # A request still queued when locust stopped (HAProxy queues up to 10 s) may land between the
        # payment's GET and the entries' read: read both again, in that order, before calling it wrong.
        await asyncio.sleep(2)
        suspects = [r for r in records if r.payment_id in wrong]
        fresh = dict(
            zip(wrong, await asyncio.gather(*(checker.get(f"/api/v1/payments/{pid}") for pid in wrong)), strict=True)
        )
        fresh_entries = await _entries_by_payment(checker, {r.account_id for r in suspects if r.account_id})
        for record in suspects:
            status, payment = fresh[record.payment_id or ""]
            if status == 200 and not _judge(
                record, payment, fresh_entries.get(payment["id"], []), rates.get(payment["merchant_id"], 0)
            ):
                del wrong[payment["id"]]
    report.add(
        "cashback credited exactly once",
        not wrong,
        f"{len(payments)} payments, {sum(len(v) for v in by_payment.values())} entries read"
        + (f"; {len(wrong)} wrong, e.g. {[f'{k}: {v}' for k, v in list(wrong.items())[:3]]}" if wrong else ""),
    )
    if lags:
        report.cashback_lag_ms = {
            "n": float(len(lags)),
            "p50": percentile(lags, 50),
            "p99": percentile(lags, 99),
            "max": max(lags),
        }


def bank_database_url() -> str | None:
    """The bank database of the platform in ``$NEWBANK_HOME`` (whichever node is primary now)."""
    if os.environ.get("NEWBANK_DATABASE_URL"):
        return os.environ["NEWBANK_DATABASE_URL"]
    try:
        from newbank.runtime.layout import Layout

        layout = Layout.load(Path(os.environ.get("NEWBANK_HOME", ".newbank")).resolve())
        return layout.pg_cluster().multi_host_dsn("bank") if layout else None
    except (ImportError, OSError, KeyError, ValueError):
        return None


def _ledger_verify(report: CheckReport) -> None:
    newbank = shutil.which("newbank") or str(Path(sys.executable).with_name("newbank"))
    url = bank_database_url()
    argv = [newbank, "ledger", "verify"] + (["--database-url", url] if url else [])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.add("ledger verifies", False, f"skipped: `newbank ledger verify` could not run ({exc})")
        return
    output = (done.stdout + done.stderr).strip().splitlines()
    tail = " / ".join(output[-3:])
    if done.returncode != 0 and ("invalid choice" in (done.stderr or "") or "usage:" in (done.stderr or "")):
        report.add("ledger verifies", False, f"skipped: this build has no `newbank ledger verify` ({tail[:120]})")
        return
    report.add("ledger verifies", done.returncode == 0, tail[:300] or f"exit {done.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the run's results folder (payments-*.jsonl, data.json)")
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{os.environ.get('NEWBANK_PORT', '8080')}")
    parser.add_argument("--data", type=Path, default=None, help="default: <results>/data.json")
    parser.add_argument("--sample", type=int, default=None, help="check a random sample of the payments")
    parser.add_argument("--settle-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    data = json.loads((args.data or args.results / "data.json").read_text())
    report = asyncio.run(
        run_checks(
            args.base_url, admin_token(), args.results, data, sample=args.sample, settle_timeout_s=args.settle_timeout
        )
    )
    (args.results / "checks.json").write_text(
        json.dumps(
            {
                "ok": report.ok,
                "results": [asdict(r) for r in report.results],
                "cashback_lag_ms": report.cashback_lag_ms,
            },
            indent=1,
        )
    )
    print("checks:\n" + report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
