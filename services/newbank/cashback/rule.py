"""The cashback rule and the reversal arithmetic, as pure integer functions.

API.md: a completed payment to a merchant whose offer is active at the payment's ``created_at`` earns
``floor(debited_amount × rate_bps / 10000)`` in the account's currency. A refund reverses the same
share of that cashback; a full refund reverses all of it.

Reversals are computed from the *cumulative* refunded amount, never refund by refund: the total
reversed after refunds adding up to R is ``floor(earned × R / payment_amount)``. So rounding never
piles up, the reversals never exceed what was earned, a full refund reverses exactly all, and the
events may arrive in any order or twice (the cumulative amount only grows: ``max`` of what was seen).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from newbank.money import proportional_share

BPS = 10_000
EntryStatus = Literal["credited", "none", "reversed"]


def cashback_for(debited_amount: int, rate_bps: int) -> int:
    """``floor(debited_amount × rate_bps / 10000)``, integers only."""
    if debited_amount < 0 or not 0 <= rate_bps <= BPS:
        raise ValueError("debited_amount must be >= 0 and rate_bps within 0..10000")
    return proportional_share(debited_amount, rate_bps, BPS)


def reversed_total(earned: int, refunded: int, payment_amount: int) -> int:
    """What has been reversed in all once ``refunded`` (cumulative) of ``payment_amount`` came back."""
    refunded = min(max(refunded, 0), payment_amount)
    return proportional_share(earned, refunded, payment_amount)


def entry_status(earned: int, reversed_amount: int) -> EntryStatus:
    """``none`` earns nothing; ``reversed`` once all of it went back; a partial reversal stays credited."""
    if earned == 0:
        return "none"
    return "reversed" if reversed_amount >= earned else "credited"


@dataclass(frozen=True, slots=True)
class EntryState:
    """The money of one cashback entry."""

    payment_amount: int  # in the payment's currency, as refunds are
    earned: int  # in the account's currency
    refunded_amount: int = 0
    reversed_amount: int = 0

    @property
    def net(self) -> int:
        return self.earned - self.reversed_amount

    @property
    def status(self) -> EntryStatus:
        return entry_status(self.earned, self.reversed_amount)

    def after_refund(self, cumulative_refunded: int) -> EntryState:
        """The entry once the payment's refunds add up to ``cumulative_refunded`` (idempotent, monotone)."""
        refunded = min(max(self.refunded_amount, cumulative_refunded), self.payment_amount)
        return replace(
            self,
            refunded_amount=refunded,
            reversed_amount=max(self.reversed_amount, reversed_total(self.earned, refunded, self.payment_amount)),
        )
