"""The cashback rule and the reversal arithmetic (API.md "Cashback rule")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newbank.cashback.rule import EntryState, cashback_for, entry_status, reversed_total

amounts = st.integers(min_value=1, max_value=1_000_000_000_000)
rates = st.integers(min_value=0, max_value=5000)


@pytest.mark.parametrize(
    ("debited", "rate_bps", "expected"),
    [
        (10_000, 250, 250),  # 2.5 % of 100.00
        (12_345, 250, 308),  # 308.625 floored
        (199, 50, 0),  # less than one minor unit
        (1, 5000, 0),
        (2, 5000, 1),
        (1_000_000_000_000, 5000, 500_000_000_000),
        (10_000, 0, 0),
    ],
)
def test_floor_of_debited_times_rate(debited: int, rate_bps: int, expected: int) -> None:
    assert cashback_for(debited, rate_bps) == expected


@pytest.mark.parametrize(("debited", "rate_bps"), [(-1, 100), (100, -1), (100, 10_001)])
def test_rejects_out_of_range(debited: int, rate_bps: int) -> None:
    with pytest.raises(ValueError):
        cashback_for(debited, rate_bps)


@given(amounts, rates)
def test_rule_is_exact_floor(debited: int, rate_bps: int) -> None:
    earned = cashback_for(debited, rate_bps)
    assert earned * 10_000 <= debited * rate_bps < (earned + 1) * 10_000
    assert 0 <= earned <= debited // 2


def test_status() -> None:
    assert entry_status(0, 0) == "none"
    assert entry_status(10, 0) == "credited"
    assert entry_status(10, 9) == "credited"
    assert entry_status(10, 10) == "reversed"


def test_partial_then_full_refund_reverses_everything() -> None:
    entry = EntryState(payment_amount=10_000, earned=333)
    half = entry.after_refund(5_000)
    assert (half.reversed_amount, half.net, half.status) == (166, 167, "credited")
    full = half.after_refund(10_000)
    assert (full.reversed_amount, full.net, full.status) == (333, 0, "reversed")


def test_refunds_out_of_order_and_twice_change_nothing_more() -> None:
    entry = EntryState(payment_amount=9_000, earned=270)
    later_first = entry.after_refund(6_000)  # the second refund's event arrives first
    assert later_first.after_refund(3_000) == later_first  # then the first one: already covered
    assert later_first.after_refund(6_000) == later_first  # and a replay of the second


def test_refund_of_an_entry_without_cashback() -> None:
    entry = EntryState(payment_amount=500, earned=0).after_refund(500)
    assert (entry.reversed_amount, entry.status) == (0, "none")


@given(
    payment=amounts,
    rate_bps=rates,
    cuts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=8),
    data=st.data(),
)
def test_reversals_never_exceed_earned_and_full_refund_reverses_all(
    payment: int, rate_bps: int, cuts: list[int], data: st.DataObject
) -> None:
    """Any split of a payment into refunds, delivered in any order, each maybe twice."""
    earned = cashback_for(payment, rate_bps)
    # Refund sizes as shares of the payment, stopping at the payment amount.
    refunds: list[int] = []
    left = payment
    for cut in cuts:
        if left == 0:
            break
        piece = max(1, min(left, payment * cut // 10_000))
        refunds.append(piece)
        left -= piece
    cumulative = [sum(refunds[: i + 1]) for i in range(len(refunds))]
    deliveries = data.draw(st.permutations(cumulative + data.draw(st.lists(st.sampled_from(cumulative)))))

    entry = EntryState(payment_amount=payment, earned=earned)
    reversed_so_far = 0
    for refunded in deliveries:
        entry = entry.after_refund(refunded)
        assert entry.reversed_amount >= reversed_so_far  # monotone: never credits back
        reversed_so_far = entry.reversed_amount
        assert 0 <= entry.reversed_amount <= earned
    assert entry.refunded_amount == cumulative[-1]
    assert entry.reversed_amount == reversed_total(earned, cumulative[-1], payment)
    if cumulative[-1] == payment:
        assert entry.reversed_amount == earned and entry.net == 0


@given(amounts, rates, st.integers(min_value=0, max_value=10_000))
def test_reversed_share_matches_refunded_share(payment: int, rate_bps: int, share_bps: int) -> None:
    earned = cashback_for(payment, rate_bps)
    refunded = payment * share_bps // 10_000
    reversed_amount = reversed_total(earned, refunded, payment)
    # floor(earned × refunded / payment): within one minor unit of the exact share, never above it.
    assert reversed_amount * payment <= earned * refunded < (reversed_amount + 1) * payment
