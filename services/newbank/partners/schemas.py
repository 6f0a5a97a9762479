"""The partners API's bodies (API.md "Cashback — partners service")."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

MAX_RATE_BPS = 5000


class OfferIn(BaseModel):
    """``PUT /partners/{merchant_id}/offer``: a rate and an optional validity window."""

    model_config = ConfigDict(extra="forbid")

    rate_bps: StrictInt = Field(ge=0, le=MAX_RATE_BPS, description="cashback rate in basis points; 0 ends it")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> OfferIn:
        if self.valid_from is not None and self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be later than valid_from")
        return self


class Offer(BaseModel):
    merchant_id: UUID
    rate_bps: int
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    version: int
    active: bool = Field(description="whether a payment made now earns cashback with this offer")
    updated_at: datetime


class PartnerStore(BaseModel):
    merchant_id: UUID
    name: str
    country: str
    category: str | None = None
    currency: str
    website: str | None = None
    offer: Offer | None = None


class PartnerPage(BaseModel):
    items: list[PartnerStore]
    next_cursor: str | None = None
