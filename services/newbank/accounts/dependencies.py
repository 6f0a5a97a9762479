"""Request-scoped pieces of the accounts service: path currencies, the client address, the resolver."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from newbank.accounts.service import AccountsKeyResolver
from newbank.auth import bearer_token
from newbank.errors import ProblemError
from newbank.money import is_known_currency


def _known_currency(code: str, where: str) -> str:
    if not is_known_currency(code):
        raise ProblemError(
            422,
            "validation-error",
            f"{code!r} is not an ISO 4217 currency code",
            errors=[{"loc": ["path", where], "msg": "unknown currency"}],
        )
    return code


_CURRENCY_PATTERN = r"^[A-Z]{3}$"


async def _base(base: Annotated[str, Path(pattern=_CURRENCY_PATTERN, examples=["EUR"])]) -> str:
    return _known_currency(base, "base")


async def _quote(quote: Annotated[str, Path(pattern=_CURRENCY_PATTERN, examples=["USD"])]) -> str:
    return _known_currency(quote, "quote")


BaseCurrency = Annotated[str, Depends(_base)]
QuoteCurrency = Annotated[str, Depends(_quote)]


async def client_address(request: Request) -> str:
    """The caller's address as the ingress saw it.

    HAProxy (``option forwardfor``) adds an ``X-Forwarded-For`` line with the peer it accepted after
    whatever the client sent, so the last entry of the last line is the one a client cannot forge.
    """
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    last = forwarded.rsplit(",", 1)[-1].strip()
    if last:
        return last[:64]
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


async def accounts_key_resolver(request: Request) -> AccountsKeyResolver:
    return request.app.state.key_resolver


KeyResolverDep = Annotated[AccountsKeyResolver, Depends(accounts_key_resolver)]


async def require_admin_caller(request: Request) -> None:
    """The internal endpoints answer only the services, which call with the admin key."""
    token = bearer_token(request) or ""
    resolver: AccountsKeyResolver = request.app.state.key_resolver
    principal = await resolver.resolve(token)
    if principal is None or not principal.is_admin:
        raise ProblemError(401, "unauthorized", "the admin key is required", headers={"WWW-Authenticate": "Bearer"})


AdminCaller = Annotated[None, Depends(require_admin_caller)]
