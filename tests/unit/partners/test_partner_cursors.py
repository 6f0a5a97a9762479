"""Partner listing cursors and rendering (newbank.partners.service), without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newbank.errors import ProblemError
from newbank.partners.service import decode_cursor, encode_cursor, rfc3339, store_json


@given(st.uuids())
def test_cursor_round_trip(merchant_id: uuid.UUID) -> None:
    cursor = encode_cursor(merchant_id)
    assert cursor.isascii() and "=" not in cursor and len(cursor) <= 64
    assert decode_cursor(cursor) == merchant_id


@pytest.mark.parametrize("cursor", ["", "!!", "abc", "a" * 40, "////////////////////////"])
def test_foreign_cursor_is_a_400(cursor: str) -> None:
    with pytest.raises(ProblemError) as raised:
        decode_cursor(cursor)
    assert (raised.value.status, raised.value.type) == (400, "invalid-cursor")


def test_rfc3339_is_utc_with_z() -> None:
    moment = datetime(2026, 5, 1, 14, 0, tzinfo=UTC) + timedelta(microseconds=5)
    assert rfc3339(moment) == "2026-05-01T14:00:00.000005Z"
    assert rfc3339(None) is None


def _row(**offer: object) -> dict[str, object]:
    base = {
        "merchant_id": uuid.uuid4(),
        "name": "Ткани и нитки",
        "country": "BG",
        "category": None,
        "currency": "BGN",
        "website": None,
        "version": None,
        "rate_bps": None,
        "valid_from": None,
        "valid_until": None,
        "set_at": None,
    }
    return {**base, **offer}


def test_store_shows_only_a_current_offer() -> None:
    now = datetime.now(UTC)
    assert store_json(_row(), now)["offer"] is None  # type: ignore[arg-type]
    ended = _row(version=3, rate_bps=0, set_at=now)
    assert store_json(ended, now)["offer"] is None  # type: ignore[arg-type]
    expired = _row(version=2, rate_bps=100, set_at=now - timedelta(days=2), valid_until=now - timedelta(days=1))
    assert store_json(expired, now)["offer"] is None  # type: ignore[arg-type]
    upcoming = _row(version=1, rate_bps=100, set_at=now, valid_from=now + timedelta(days=1))
    offer = store_json(upcoming, now)["offer"]  # type: ignore[arg-type]
    assert offer is not None and (offer["rate_bps"], offer["active"], offer["version"]) == (100, False, 1)
