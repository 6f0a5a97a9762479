"""The cashback API's bodies and the payloads of the events it consumes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from newbank.money import MAX_AMOUNT, is_known_currency


def _known_currency(code: str) -> str:
    if not is_known_currency(code):
        raise ValueError(f"unknown currency {code!r}")
    return code


Currency = Annotated[str, AfterValidator(_known_currency)]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]
NonNegative = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]


# --- API -----------------------------------------------------------------------------------------


class RedemptionIn(BaseModel):
    amount: Amount = Field(description="minor units of the account's currency, at most the cashback balance")


class Redemption(BaseModel):
    id: UUID
    account_id: UUID
    amount: int
    currency: str
    status: Literal["pending", "completed"]
    created_at: datetime
    completed_at: datetime | None = None


class CashbackEntry(BaseModel):
    payment_id: UUID
    merchant_id: UUID
    amount: int = Field(description="the payment's cashback now: earned minus what refunds reversed")
    earned: int
    reversed_amount: int
    status: Literal["credited", "reversed"]
    created_at: datetime


class CashbackAccount(BaseModel):
    account_id: UUID
    currency: str
    balance: int
    entries: list[CashbackEntry]
    next_cursor: str | None = None


# --- Events consumed (their ``data``) --------------------------------------------------------------


class _EventData(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AccountOpened(_EventData):
    account_id: UUID
    customer_id: UUID
    currency: Currency
    created_at: AwareDatetime


class PaymentFacts(_EventData):
    """What a payment event says about the payment (both payment.completed and payment.refunded)."""

    payment_id: UUID
    account_id: UUID
    customer_id: UUID
    merchant_id: UUID
    amount: Amount
    currency: Currency
    debited_amount: NonNegative
    account_currency: Currency
    created_at: AwareDatetime


class PaymentCompleted(PaymentFacts):
    fx_rate: str | None = None


class PaymentRefunded(_EventData):
    refund_id: UUID
    payment_id: UUID
    account_id: UUID
    customer_id: UUID
    merchant_id: UUID
    amount: Amount
    refunded_amount: Amount
    payment_amount: Amount
    currency: Currency
    debited_amount: NonNegative
    account_currency: Currency
    payment_created_at: AwareDatetime
    created_at: AwareDatetime

    def payment(self) -> PaymentFacts:
        """The refunded payment, so a refund that overtakes its payment.completed can still be applied."""
        return PaymentFacts(
            payment_id=self.payment_id,
            account_id=self.account_id,
            customer_id=self.customer_id,
            merchant_id=self.merchant_id,
            amount=self.payment_amount,
            currency=self.currency,
            debited_amount=self.debited_amount,
            account_currency=self.account_currency,
            created_at=self.payment_created_at,
        )


class RedemptionCompleted(_EventData):
    redemption_id: UUID
    account_id: UUID
    amount: Amount
    completed_at: AwareDatetime
