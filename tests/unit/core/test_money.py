"""Money: currency data from Babel, conversion with half-even rounding, proportional shares."""

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newbank.money import (
    MAX_AMOUNT,
    convert,
    currency_exponent,
    format_rate,
    is_known_currency,
    parse_rate,
    proportional_share,
)


@pytest.mark.parametrize(("code", "exponent"), [("EUR", 2), ("USD", 2), ("GBP", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3)])
def test_exponents_come_from_iso_4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["eur", "ABC", "XXX", "XTS", "", "EURO"])
def test_unknown_or_not_money_codes_are_refused(code: str) -> None:
    assert not is_known_currency(code)
    with pytest.raises(ValueError):
        currency_exponent(code)


def test_conversion_rounds_half_to_even() -> None:
    # 150 USD cents at 0.925 EUR per USD = 138.75 EUR cents -> 139; 0.5 ties go to the even neighbour.
    assert convert(150, "USD", "EUR", Decimal("0.925")) == 139
    assert convert(1, "EUR", "USD", Decimal("0.5")) == 0
    assert convert(3, "EUR", "USD", Decimal("0.5")) == 2
    assert convert(5, "EUR", "USD", Decimal("0.5")) == 2


def test_conversion_between_exponents() -> None:
    # 1000 JPY (exponent 0) at 0.0062 EUR per JPY = 6.20 EUR = 620 cents.
    assert convert(1000, "JPY", "EUR", Decimal("0.0062")) == 620
    # 1.000 KWD (1000 fils) at 3.25 USD per KWD = 3.25 USD = 325 cents.
    assert convert(1000, "KWD", "USD", Decimal("3.25")) == 325
    # 100 cents EUR at 160.55 JPY per EUR = 160.55 JPY -> 161 yen.
    assert convert(100, "EUR", "JPY", Decimal("160.55")) == 161


@given(
    amount=st.integers(min_value=1, max_value=MAX_AMOUNT),
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1000"), places=6),
    pair=st.sampled_from([("EUR", "USD"), ("JPY", "EUR"), ("EUR", "KWD"), ("KWD", "JPY"), ("GBP", "BHD")]),
)
def test_conversion_is_the_exact_value_rounded_half_even(amount: int, rate: Decimal, pair: tuple[str, str]) -> None:
    source, target = pair
    exact = Decimal(amount) * rate * Decimal(10) ** (currency_exponent(target) - currency_exponent(source))
    converted = convert(amount, source, target, rate)
    assert abs(Decimal(converted) - exact) <= Decimal("0.5")
    assert converted == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize("text", ["0", "-1", "abc", "NaN", "Infinity", "1e400", "", "0.0000000000001"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rates_format_without_exponent() -> None:
    assert format_rate(parse_rate("1.0850")) == "1.085"
    assert format_rate(parse_rate("100")) == "100"
    assert format_rate(parse_rate("0.00001")) == "0.00001"


@given(
    total=st.integers(min_value=0, max_value=MAX_AMOUNT),
    whole=st.integers(min_value=1, max_value=MAX_AMOUNT),
    data=st.data(),
)
def test_proportional_share_never_exceeds_the_total(total: int, whole: int, data: st.DataObject) -> None:
    part = data.draw(st.integers(min_value=0, max_value=whole))
    share = proportional_share(total, part, whole)
    assert 0 <= share <= total
    assert proportional_share(total, whole, whole) == total
