"""``POST /api/v1/payments`` answered below FastAPI's routing, dependencies and body handling.

A payment is the platform's hot path. Measured side by side on one instance at its 50 % CPU quota
(sixteenth session, ``python -m loadtest.bench_payments``), FastAPI's routing, dependencies and body
handling took about a third of the instance's CPU per payment: 1.5-1.6 ms with them, 1.0-1.1 ms
without. This ASGI layer does what the route does on the path every well-formed payment takes: the
merchant's key, the Idempotency-Key, the JSON body validated by the same model, the same service
call, the same response.

Anything else is handed to FastAPI unchanged, body included: no or an unknown key, a key that is
not a merchant's, a body that is not ``application/json`` or does not validate. So every refusal
keeps one implementation (the route's), and the route stays the documented contract (OpenAPI).
Problems raised on the way (a bad Idempotency-Key, the accounts service unreachable, an amount too
large) are answered with the same handler FastAPI uses for them.
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newbank.auth import Principal, bearer_token_of
from newbank.errors import ProblemError, problem_response
from newbank.idempotency import validate_idempotency_key
from newbank.transactions import service
from newbank.transactions.schemas import PaymentCreate

PAYMENTS_PATH = service.PAYMENTS_PATH


class PaymentFastPath:
    """Pure ASGI middleware; ``route`` is the FastAPI route it stands in for (metrics name it)."""

    def __init__(self, app: ASGIApp, route: object) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PAYMENTS_PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        token, idempotency_key, content_type = _headers(scope)
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        try:
            handled = await self._pay(scope, receive, send, token, idempotency_key, content_type, body)
        except ProblemError as problem:
            await problem_response(problem)(scope, receive, send)
            return
        if not handled:
            await self.app(scope, _replay(body, receive), send)

    async def _pay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        token: str | None,
        idempotency_key: str | None,
        content_type: bytes | None,
        body: bytes,
    ) -> bool:
        """Make the payment and answer; False when the request is not one this path takes."""
        if token is None or content_type is None or not _is_json(content_type):
            return False
        app = scope["app"]
        principal: Principal | None = await app.state.key_resolver.resolve(token)
        if principal is None or principal.kind != "merchant":
            return False
        key = validate_idempotency_key(idempotency_key)
        try:
            request = PaymentCreate.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return False
        ctx = app.state.ctx
        outcome = await service.make_payment(ctx.db, principal, key, request)
        if outcome.status == 201 and not outcome.replayed:
            ctx.relay.wake()
        await outcome.response()(scope, receive, send)
        return True


def _headers(scope: Scope) -> tuple[str | None, str | None, bytes | None]:
    """The bearer token, Idempotency-Key and Content-Type, each its first occurrence (as Starlette's
    ``Headers.get`` reads them)."""
    authorization = idempotency_key = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"idempotency-key" and idempotency_key is None:
            idempotency_key = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    token = bearer_token_of(authorization.decode("latin-1") if authorization is not None else None)
    key = idempotency_key.decode("latin-1") if idempotency_key is not None else None
    return token, key, content_type


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
