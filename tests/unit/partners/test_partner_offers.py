"""Which offer version applies at an instant (newbank.partners.offers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newbank.partners.offers import OfferVersion, is_listed, latest_recorded, offer_in_force

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


HISTORY = [
    OfferVersion(1, 200, set_at=at(0)),  # 2 % from minute 0
    OfferVersion(2, 500, set_at=at(10), valid_from=at(20), valid_until=at(30)),  # 5 % in [20, 30)
    OfferVersion(3, 0, set_at=at(40)),  # ended at 40
    OfferVersion(4, 300, set_at=at(50), valid_from=at(45)),  # 3 % from 50 (never reaches back to 45)
]


@pytest.mark.parametrize(
    ("minute", "expected_version"),
    [
        (-1, None),  # before any offer
        (0, 1),
        (9.99, 1),
        (10, None),  # v2 recorded, its window not open yet: no cashback
        (20, 2),
        (29.99, 2),
        (30, None),  # v2's window closed
        (40, None),  # ended
        (47, None),  # v4's valid_from is 45, but it was only recorded at 50
        (50, 4),
        (10_000, 4),
    ],
)
def test_version_in_force(minute: float, expected_version: int | None) -> None:
    offer = offer_in_force(HISTORY, at(minute))
    assert (offer.version if offer else None) == expected_version


def test_order_of_the_list_does_not_matter() -> None:
    assert offer_in_force(reversed(HISTORY), at(25)) == HISTORY[1]


def test_offer_changed_between_payment_and_processing() -> None:
    """The payment at minute 5 earns v1's rate even when processed after v2 and v3 were recorded."""
    assert offer_in_force(HISTORY, at(5)).rate_bps == 200  # type: ignore[union-attr]


def test_listing_shows_future_offers_but_not_ended_or_expired() -> None:
    assert is_listed(HISTORY[1], at(15))  # starts later: shown
    assert not is_listed(HISTORY[1], at(31))  # expired
    assert not is_listed(HISTORY[2], at(41))  # ended
    assert not is_listed(None, at(0))


Raw = list[tuple[int, int, int | None, int | None]]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 1000),  # set_at minute
            st.integers(0, 5000),  # rate
            st.none() | st.integers(0, 1000),  # valid_from minute
            st.none() | st.integers(1, 200),  # window length
        ),
        max_size=12,
    ),
    st.integers(-10, 1100),
)
def test_in_force_is_the_latest_recorded_that_covers(raw: Raw, t: int) -> None:
    set_ats = sorted(r[0] for r in raw)  # versions are recorded in time order
    versions = [
        OfferVersion(
            i + 1,
            rate,
            set_at=at(set_ats[i]),
            valid_from=at(vf) if vf is not None else None,
            valid_until=at((vf or 0) + length) if length is not None else None,
        )
        for i, (_, rate, vf, length) in enumerate(raw)
    ]
    chosen = offer_in_force(versions, at(t))
    latest = latest_recorded(versions, at(t))
    if chosen is not None:
        assert chosen is latest and chosen.rate_bps > 0 and chosen.set_at <= at(t)
        assert chosen.valid_from is None or chosen.valid_from <= at(t)
        assert chosen.valid_until is None or at(t) < chosen.valid_until
    elif latest is not None:
        assert not latest.covers(at(t))
    # Versions recorded after t never influence the answer (a late event gets the same answer).
    assert offer_in_force([v for v in versions if v.set_at <= at(t)], at(t)) == chosen
