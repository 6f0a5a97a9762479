"""The accounts service's API models (API.md, "Bank — accounts service")."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from newbank.accounts.fields import Amount, CountryCode, CurrencyCode, Name, Text
from newbank.money import parse_rate


class _Request(BaseModel):
    # Unknown fields are ignored (clients may send more than the contract names); missing or
    # wrong-typed ones are refused.
    model_config = ConfigDict(extra="ignore")


class CustomerCreate(_Request):
    name: Name
    country: CountryCode
    email: Annotated[Text(320, 3), Field(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None


class CustomerCreated(BaseModel):
    id: UUID
    name: str
    country: str
    email: str | None = None
    api_key: str = Field(description="shown once; store it now")
    created_at: datetime


class AccountCreate(_Request):
    customer_id: UUID
    currency: CurrencyCode


class Account(BaseModel):
    id: UUID
    customer_id: UUID
    currency: str
    balance: int
    created_at: datetime


class DepositCreate(_Request):
    amount: Amount
    currency: CurrencyCode


class Deposit(BaseModel):
    id: UUID
    account_id: UUID
    amount: int
    currency: str
    balance: int
    created_at: datetime


class FxRateSet(_Request):
    rate: Annotated[StrictStr, Field(max_length=40, examples=["1.0850"])]

    @field_validator("rate")
    @classmethod
    def _positive_decimal(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def decimal(self) -> Decimal:
        return parse_rate(self.rate)


class FxRate(BaseModel):
    base: str
    quote: str
    rate: str = Field(description="quote major units per one base major unit")
    updated_at: datetime


class MerchantCreate(_Request):
    name: Name
    country: CountryCode
    currency: CurrencyCode
    website: Text(2048) | None = None
    category: Text(100, 1) | None = None


class MerchantCreated(BaseModel):
    id: UUID
    name: str
    country: str
    currency: str
    website: str | None = None
    category: str | None = None
    settlement_account_id: UUID
    api_key: str = Field(description="shown once; store it now")
    created_at: datetime


class Merchant(BaseModel):
    id: UUID
    name: str
    country: str
    currency: str
    website: str | None = None
    category: str | None = None
    settlement_account_id: UUID
    settlement_balance: int
    created_at: datetime


MAX_INTROSPECTED_KEYS = 500


class IntrospectionRequest(BaseModel):
    """Several keys in one request: a burst of keys new to a service costs one round trip per batch."""

    tokens: list[StrictStr] = Field(min_length=1, max_length=MAX_INTROSPECTED_KEYS)


class Introspection(BaseModel):
    """RFC 7662 style: ``active`` and, for a live key, who it is."""

    active: bool
    kind: Literal["admin", "merchant", "customer"] | None = None
    sub: str | None = None


class Introspections(BaseModel):
    """One answer per key asked, in the order asked."""

    answers: list[Introspection]
