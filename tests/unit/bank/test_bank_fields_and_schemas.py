"""The Bank's request models refuse what API.md refuses, before any SQL runs."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from newbank.accounts.fields import known_countries
from newbank.accounts.schemas import CustomerCreate, DepositCreate, FxRateSet, MerchantCreate
from newbank.transactions.schemas import PaymentCreate, RefundCreate


def test_countries_are_iso_3166_alpha_2_from_cldr() -> None:
    countries = known_countries()
    assert len(countries) == 249  # ISO 3166-1 has 249 officially assigned codes
    assert {"DE", "JP", "KW", "US", "GB", "AQ"} <= countries
    assert not {"EU", "UN", "ZZ", "XK", "QO", "001", "de"} & countries


@pytest.mark.parametrize("amount", [1, 10, 1_000_000_000_000])
def test_amounts_in_range_are_accepted(amount: int) -> None:
    assert DepositCreate(amount=amount, currency="EUR").amount == amount
    assert RefundCreate(amount=amount).amount == amount


@pytest.mark.parametrize("amount", [0, -1, 1_000_000_000_001, 1.0, 10.5, "10", True, False, None, [10]])
def test_amounts_must_be_json_integers_in_range(amount: object) -> None:
    with pytest.raises(ValidationError):
        DepositCreate(amount=amount, currency="EUR")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PaymentCreate(account_id=uuid.uuid4(), amount=amount, currency="EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EURO", "ABC", "XXX", "XTS", "", 978, None])
def test_currencies_must_be_known_iso_4217_upper_case(currency: object) -> None:
    with pytest.raises(ValidationError):
        DepositCreate(amount=1, currency=currency)  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD", "BHD", "CHF"])
def test_known_currencies_are_accepted(currency: str) -> None:
    assert PaymentCreate(account_id=uuid.uuid4(), amount=1, currency=currency).currency == currency


@pytest.mark.parametrize("country", ["de", "XX", "EU", "DEU", "", 49])
def test_countries_are_checked(country: object) -> None:
    with pytest.raises(ValidationError):
        CustomerCreate(name="Ada", country=country)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MerchantCreate(name="Shop", country=country, currency="EUR")  # type: ignore[arg-type]


def test_names_may_be_any_unicode_but_not_empty() -> None:
    assert CustomerCreate(name="山田 Zoë 🙂", country="JP").name == "山田 Zoë 🙂"
    with pytest.raises(ValidationError):
        CustomerCreate(name="", country="JP")
    with pytest.raises(ValidationError):
        CustomerCreate(name="x" * 201, country="JP")


@pytest.mark.parametrize("rate", ["1.0850", "0.000001", "151.37", "1"])
def test_fx_rates_are_positive_decimal_strings(rate: str) -> None:
    assert FxRateSet(rate=rate).rate == rate


@pytest.mark.parametrize("rate", ["0", "-1", "abc", "NaN", "Infinity", "1e400", "0.0000000000001", 1.5, 2, None])
def test_bad_fx_rates_are_refused(rate: object) -> None:
    with pytest.raises(ValidationError):
        FxRateSet(rate=rate)  # type: ignore[arg-type]


def test_payment_reference_is_optional_and_bounded() -> None:
    account = uuid.uuid4()
    assert PaymentCreate(account_id=account, amount=5, currency="EUR").reference is None
    with pytest.raises(ValidationError):
        PaymentCreate(account_id=account, amount=5, currency="EUR", reference="x" * 201)
    with pytest.raises(ValidationError):
        PaymentCreate(account_id="not-a-uuid", amount=5, currency="EUR")  # type: ignore[arg-type]
