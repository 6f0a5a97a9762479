"""Field types and the problem+json schema shared by the Bank's two services (accounts, transactions).

They turn API.md's rules on money and identity into pydantic types, so a wrong amount, currency or
country is refused with 422 before any SQL runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from babel import Locale
from pydantic import AfterValidator, Field, StrictInt, StrictStr

from newbank.money import MAX_AMOUNT, is_known_currency

# CLDR lists regions that are not ISO 3166-1 countries: continents and groupings (EU, EZ, UN, QO),
# reserved or user-assigned codes (X*, ZZ) and exceptionally reserved ones (AC, CP, CQ, DG, EA, IC, TA).
_NOT_ISO_3166 = frozenset({"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "ZZ"})


@lru_cache(maxsize=1)
def known_countries() -> frozenset[str]:
    territories = Locale.parse("en").territories
    return frozenset(
        code
        for code in territories
        if len(code) == 2 and code.isalpha() and code not in _NOT_ISO_3166 and not code.startswith("X")
    )


def _currency(code: str) -> str:
    if not is_known_currency(code):
        raise ValueError("not an ISO 4217 currency code (upper case, e.g. EUR)")
    return code


def _no_nul(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000: refused here as a 422, not failed there as a 500.
    if "\x00" in text:
        raise ValueError("must not contain U+0000")
    return text


def _country(code: str) -> str:
    if code not in known_countries():
        raise ValueError("not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE)")
    return code


Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT, description="minor units of the currency")]
CurrencyCode = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"]), AfterValidator(_currency)]
CountryCode = Annotated[StrictStr, Field(pattern=r"^[A-Z]{2}$", examples=["DE"]), AfterValidator(_country)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]


def Text(max_length: int, min_length: int = 0):
    """A free-text field the database can store."""
    return Annotated[StrictStr, Field(min_length=min_length, max_length=max_length), AfterValidator(_no_nul)]
