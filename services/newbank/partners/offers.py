"""Which offer is in force at an instant: pure functions, shared with the cashback service.

An offer is never edited: every change is a new version with the time it was recorded (``set_at``).
The offer in force at instant ``t`` is the latest version recorded at or before ``t``, provided its own
window ``[valid_from, valid_until)`` contains ``t`` and its rate is not 0 (a rate of 0 ends the offer).
Because a version never reaches back before it was recorded, a payment event processed late gets the
same answer as one processed at once, whatever changed in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class OfferVersion:
    version: int
    rate_bps: int
    set_at: datetime
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def covers(self, at: datetime) -> bool:
        """Whether this version's own window and rate make it active at ``at``."""
        if self.rate_bps <= 0:
            return False
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_until is None or at < self.valid_until

    @property
    def ended(self) -> bool:
        return self.rate_bps <= 0


def latest_recorded(versions: Iterable[OfferVersion], at: datetime) -> OfferVersion | None:
    """The version that was the merchant's offer at ``at`` (active or not)."""
    best: OfferVersion | None = None
    for candidate in versions:
        if candidate.set_at <= at and (best is None or candidate.version > best.version):
            best = candidate
    return best


def offer_in_force(versions: Iterable[OfferVersion], at: datetime) -> OfferVersion | None:
    """The version whose rate applies to a payment created at ``at``; None when no offer was active."""
    current = latest_recorded(versions, at)
    if current is None or not current.covers(at):
        return None
    return current


def is_listed(version: OfferVersion | None, now: datetime) -> bool:
    """Whether a partner listing shows this (latest) version: not ended and not expired yet.

    An offer that starts later is shown (with its ``valid_from``) so customers can see it coming.
    """
    if version is None or version.ended:
        return False
    return version.valid_until is None or now < version.valid_until
