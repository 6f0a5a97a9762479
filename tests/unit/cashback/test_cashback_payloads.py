"""What the cashback service accepts: API bodies (strict integers) and the bank's event payloads
(anything else is a PermanentEventError, so the message is dead-lettered with its reason)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from newbank.cashback.crediting import parse
from newbank.cashback.schemas import PaymentCompleted, PaymentRefunded, RedemptionIn
from newbank.messaging.consumer import PermanentEventError
from newbank.messaging.events import Event
from newbank.partners.schemas import OfferIn


def event(event_type: str, data: dict) -> Event:
    return Event(id=uuid.uuid4(), type=event_type, version=1, source="test", occurred_at=datetime.now(UTC), data=data)


PAYMENT = {
    "payment_id": str(uuid.uuid4()),
    "account_id": str(uuid.uuid4()),
    "customer_id": str(uuid.uuid4()),
    "merchant_id": str(uuid.uuid4()),
    "amount": 1_000,
    "currency": "USD",
    "debited_amount": 920,
    "account_currency": "EUR",
    "fx_rate": "0.92",
    "created_at": "2026-11-26T04:00:00.123456Z",
}


def test_payment_completed_parses() -> None:
    payment = parse(PaymentCompleted, event("payment.completed", PAYMENT))
    assert (payment.debited_amount, payment.account_currency) == (920, "EUR")
    assert payment.created_at == datetime(2026, 11, 26, 4, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {"debited_amount": None},
        {"debited_amount": "920"},
        {"debited_amount": 9.5},
        {"debited_amount": -1},
        {"amount": 0},
        {"account_currency": "XYZ"},
        {"payment_id": "not-a-uuid"},
        {"created_at": "2026-11-26T04:00:00"},  # no time zone: ambiguous instant
        {"created_at": "yesterday"},
    ],
)
def test_bad_payment_payloads_are_permanent_errors(change: dict) -> None:
    with pytest.raises(PermanentEventError):
        parse(PaymentCompleted, event("payment.completed", {**PAYMENT, **change}))


def test_refund_carries_its_payment() -> None:
    refund = parse(
        PaymentRefunded,
        event(
            "payment.refunded",
            {
                **{k: PAYMENT[k] for k in ("payment_id", "account_id", "customer_id", "merchant_id", "currency")},
                **{k: PAYMENT[k] for k in ("debited_amount", "account_currency", "fx_rate")},
                "refund_id": str(uuid.uuid4()),
                "amount": 400,
                "refunded_amount": 600,
                "payment_amount": 1_000,
                "payment_created_at": PAYMENT["created_at"],
                "created_at": "2026-11-26T05:00:00Z",
            },
        ),
    )
    payment = refund.payment()
    assert (payment.amount, payment.debited_amount, payment.created_at.hour) == (1_000, 920, 4)


@pytest.mark.parametrize("amount", [0, -1, 1.0, "5", True, None, 1_000_000_000_001])
def test_redemption_amount_is_a_strict_positive_integer(amount: object) -> None:
    with pytest.raises(ValidationError):
        RedemptionIn.model_validate({"amount": amount})
    assert RedemptionIn.model_validate({"amount": 1_000_000_000_000}).amount == 1_000_000_000_000


@pytest.mark.parametrize(
    "body",
    [
        {"rate_bps": 5001},
        {"rate_bps": -1},
        {"rate_bps": True},
        {"rate_bps": "10"},
        {"rate_bps": 10, "valid_from": "2026-01-02T00:00:00Z", "valid_until": "2026-01-02T00:00:00Z"},
        {"rate_bps": 10, "valid_until": "2026-01-02T00:00:00"},
        {"rate_bps": 10, "extra": 1},
    ],
)
def test_offer_body_rejected(body: dict) -> None:
    with pytest.raises(ValidationError):
        OfferIn.model_validate(body)


def test_event_data_is_what_the_transaction_service_applies() -> None:
    """cashback.* data: the payment's net cashback now, the original, what was reversed, a version."""
    from newbank.cashback.crediting import Entry
    from newbank.cashback.rule import EntryState

    ids = [uuid.uuid4() for _ in range(3)]
    partial = Entry(*ids, "EUR", EntryState(10_000, 333).after_refund(5_000), 2)
    assert partial.event_data() == {
        "payment_id": str(ids[0]),
        "account_id": str(ids[1]),
        "merchant_id": str(ids[2]),
        "status": "credited",  # a partial reversal stays credited, with the reduced amount
        "amount": 167,
        "earned": 333,
        "reversed_amount": 166,
        "currency": "EUR",
        "entry_version": 2,
    }
    full = Entry(*ids, "EUR", EntryState(10_000, 333).after_refund(10_000), 3).event_data()
    assert (full["status"], full["amount"], full["reversed_amount"]) == ("reversed", 0, 333)
