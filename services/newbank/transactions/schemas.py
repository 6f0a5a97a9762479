"""The transaction service's API models (API.md "Bank — transaction service")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from newbank.accounts.fields import Amount, CurrencyCode, Text


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: UUID
    amount: Amount
    currency: CurrencyCode
    reference: Text(200) | None = None


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount: Amount


class Cashback(BaseModel):
    status: Literal["pending", "credited", "none", "reversed"]
    amount: int | None = None


class Payment(BaseModel):
    id: UUID
    status: Literal["completed"]
    account_id: UUID
    merchant_id: UUID
    amount: int
    currency: str
    debited_amount: int = Field(description="what left the account, in the account's currency")
    account_currency: str
    fx_rate: str = Field(description='the rate applied, "1" when the currencies are the same')
    refunded_amount: int
    reference: str | None
    created_at: datetime
    cashback: Cashback


class PaymentPage(BaseModel):
    items: list[Payment]
    next_cursor: str | None


class Refund(BaseModel):
    id: UUID
    payment_id: UUID
    amount: int
    currency: str
    credited_amount: int = Field(description="what the account got back, in its currency")
    created_at: datetime
