"""Pure pieces of the Bank: payment-list cursors, the ledger report, the client address."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from newbank.accounts.dependencies import client_address
from newbank.errors import ProblemError
from newbank.ledger import LedgerReport
from newbank.transactions.service import decode_cursor, encode_cursor


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    payment_id=st.uuids(),
)
def test_cursor_round_trips(moment: datetime, payment_id: uuid.UUID) -> None:
    assert decode_cursor(encode_cursor(moment, payment_id)) == (moment, payment_id)


def test_cursor_keeps_offsets_as_instants() -> None:
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone(tz=None)
    decoded, _ = decode_cursor(encode_cursor(moment, uuid.uuid4()))
    assert decoded == moment and decoded.utcoffset() is not None


@pytest.mark.parametrize("cursor", ["garbage!", "", "YWJj", "MjAyNi0wMS0wMXxub3QtYS11dWlk", "////"])
def test_bad_cursors_are_400(cursor: str) -> None:
    with pytest.raises(ProblemError) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400 and caught.value.type == "invalid-cursor"


def test_naive_time_in_a_cursor_is_refused() -> None:
    naive = datetime(2026, 1, 1, 12) + timedelta(microseconds=5)
    import base64

    forged = base64.urlsafe_b64encode(f"{naive.isoformat()}|{uuid.uuid4()}".encode()).decode()
    with pytest.raises(ProblemError):
        decode_cursor(forged)


def test_ledger_report_summary() -> None:
    clean = LedgerReport(accounts=3, system_accounts=2, journal_entries=4, postings=9, held_per_currency={"EUR": 10})
    assert clean.ok
    text = clean.summary()
    assert (
        "3 accounts" in text
        and "4 journal entries" in text
        and "EUR 10" in text
        and text.endswith("every entry sums to zero")
    )
    broken = LedgerReport(balance_differences=[{"id": f"a{i}", "stored": 1, "computed": 0} for i in range(12)])
    assert not broken.ok
    text = broken.summary(shown=10)
    assert "FAIL 12 × stored balance differs" in text and "and 2 more" in text and text.endswith("FAILED")


def _request(headers: list[tuple[bytes, bytes]], peer: str = "172.16.0.9") -> Request:
    return Request({"type": "http", "headers": headers, "client": (peer, 50000), "method": "POST", "path": "/"})


async def test_client_address_is_the_entry_haproxy_appended() -> None:
    assert await client_address(_request([])) == "172.16.0.9"
    assert await client_address(_request([(b"x-forwarded-for", b"10.0.0.1")])) == "10.0.0.1"
    # A client-sent first entry is not trusted: HAProxy's own (the last) is.
    assert await client_address(_request([(b"x-forwarded-for", b"1.2.3.4, 10.0.0.1")])) == "10.0.0.1"
    two_lines = [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"10.0.0.2")]
    assert await client_address(_request(two_lines)) == "10.0.0.2"
    assert await client_address(_request([(b"x-forwarded-for", b" , ")])) == "172.16.0.9"
