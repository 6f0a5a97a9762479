"""Money: integer minor units plus an ISO 4217 currency; ``Decimal`` only inside a conversion.

Currency codes and minor-unit exponents come from Babel's CLDR data, not from a hand-written table.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies

MAX_AMOUNT = 1_000_000_000_000
# Codes in ISO 4217 that are not money a customer can hold: "no currency" and "testing".
_NOT_MONEY = frozenset({"XXX", "XTS"})
MAX_RATE = Decimal("1000000000")


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    return frozenset(code for code in list_currencies() if code not in _NOT_MONEY)


def is_known_currency(code: str) -> bool:
    return code in known_currencies()


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """The ISO 4217 minor-unit exponent (EUR 2, JPY 0, KWD 3)."""
    if not is_known_currency(code):
        raise ValueError(f"unknown currency {code!r}")
    return get_currency_precision(code)


def parse_rate(text: str) -> Decimal:
    """A rate as API.md gives it: a decimal string > 0 (quote major units per one base major unit)."""
    try:
        rate = Decimal(text)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError("rate must be a decimal string") from exc
    if not rate.is_finite() or rate <= 0 or rate > MAX_RATE:
        raise ValueError("rate must be a finite decimal > 0")
    if rate.as_tuple().exponent < -12:  # type: ignore[operator]
        raise ValueError("rate has more than 12 decimal places")
    return rate


def convert(amount: int, from_currency: str, to_currency: str, rate: Decimal) -> int:
    """Convert minor units of ``from_currency`` into minor units of ``to_currency``.

    ``rate`` is to_currency major units per one from_currency major unit. The result is rounded half
    to even to the target currency's minor unit (the bank's rounding, without bias over many payments).
    """
    shift = currency_exponent(to_currency) - currency_exponent(from_currency)
    exact = Decimal(amount) * rate * (Decimal(10) ** shift)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def proportional_share(total: int, part: int, whole: int) -> int:
    """floor(total × part / whole) with integers only (no float, no Decimal context surprises)."""
    if whole <= 0:
        raise ValueError("whole must be > 0")
    return (total * part) // whole


def format_rate(rate: Decimal) -> str:
    """A rate as a plain decimal string without exponent and trailing zeros ("1.085", "1")."""
    text = format(rate.normalize(), "f")
    return text
