"""How the after-run check judges one payment's cashback against the customer's entries."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.checks import expected_cashback, judge_payment
from loadtest.setup_data import CURRENCIES, fx_rate


def _payment(debited: int, status: str, amount: int | None = None) -> dict[str, Any]:
    cashback: dict[str, Any] = {"status": status}
    if amount is not None:
        cashback["amount"] = amount
    return {"id": "p1", "debited_amount": debited, "cashback": cashback}


def _entry(earned: int, reversed_amount: int = 0, status: str = "credited") -> dict[str, Any]:
    return {
        "payment_id": "p1",
        "amount": earned - reversed_amount,
        "earned": earned,
        "reversed_amount": reversed_amount,
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("debited", "bps", "expected"), [(10_000, 250, 250), (199, 100, 1), (99, 100, 0), (7, 5000, 3)]
)
def test_expected_cashback_floors(debited: int, bps: int, expected: int) -> None:
    assert expected_cashback(debited, bps) == expected


def test_credited_once_is_right() -> None:
    assert judge_payment(_payment(10_000, "credited", 250), [_entry(250)], 250, refunded=0) is None


def test_credited_twice_is_wrong() -> None:
    assert "2 cashback entries" in (judge_payment(_payment(10_000, "credited", 250), [_entry(250)] * 2, 250, 0) or "")


def test_missing_or_wrong_amount_is_wrong() -> None:
    assert judge_payment(_payment(10_000, "credited", 250), [], 250, 0)
    assert "expected 250" in (judge_payment(_payment(10_000, "credited", 249), [_entry(249)], 250, 0) or "")
    assert judge_payment(_payment(10_000, "pending"), [], 250, 0)


def test_refunded_payment_keeps_its_one_entry() -> None:
    assert judge_payment(_payment(10_000, "reversed", 0), [_entry(250, 250, "reversed")], 250, refunded=10_000) is None
    assert judge_payment(_payment(10_000, "credited", 125), [_entry(250, 125)], 250, refunded=5_000) is None


def test_no_offer_earns_nothing() -> None:
    assert judge_payment(_payment(10_000, "none"), [], 0, 0) is None
    assert judge_payment(_payment(10_000, "none"), [_entry(100)], 0, 0)


def test_fx_rates_are_consistent_both_ways() -> None:
    for base in CURRENCIES:
        for quote in CURRENCIES:
            if base != quote:
                product = float(fx_rate(base, quote)) * float(fx_rate(quote, base))
                assert product == pytest.approx(1, rel=1e-4)
