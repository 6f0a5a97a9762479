"""Which requests the payment fast path answers itself, and that it hands the others over whole.

The answers themselves are compared with FastAPI's route against the real services in
``tests/integration/bank/test_bank_payment_fast_path.py``; here the service call is replaced, so
that what is checked is the dispatch: who answered, and what the FastAPI side received.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from newbank.auth import Principal
from newbank.errors import ProblemError
from newbank.idempotency import Outcome
from newbank.transactions import payment_fast_path, service
from newbank.transactions.router import PAYMENT_ROUTE
from newbank.transactions.schemas import PaymentCreate

MERCHANT = Principal("merchant", uuid.uuid4())
CUSTOMER = Principal("customer", uuid.uuid4())
KEYS = {"merchant-key": MERCHANT, "customer-key": CUSTOMER}
GOOD = orjson.dumps({"account_id": str(uuid.uuid4()), "amount": 10, "currency": "EUR"})


class Resolver:
    async def resolve(self, token: str) -> Principal | None:
        if token == "down":
            raise ProblemError(503, "service-unavailable", "accounts unreachable")
        return KEYS.get(token)


class Relay:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class Inner:
    """Stands for FastAPI: records what reached it and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(
    layer: payment_fast_path.PaymentFastPath,
    headers: dict[str, str],
    chunks: list[bytes],
    path: str = "/api/v1/payments",
    method: str = "POST",
) -> tuple[int, bytes, dict[str, Any]]:
    relay = Relay()
    app = SimpleNamespace(state=SimpleNamespace(key_resolver=Resolver(), ctx=SimpleNamespace(db="db", relay=relay)))
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "app": app,
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
    }
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await layer(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return status, body, {"scope": scope, "wakes": relay.wakes}


@pytest.fixture
def paid(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    async def make_payment(db: Any, merchant: Principal, key: str, request: PaymentCreate) -> Outcome:
        calls.append((db, merchant, key, request))
        if request.amount == 666:
            raise ProblemError(422, "amount-too-large", "too large")
        return Outcome(201, {"id": "p1", "amount": request.amount})

    monkeypatch.setattr(service, "make_payment", make_payment)
    return calls


def headers(token: str = "merchant-key", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1", "Content-Type": "application/json", **extra}


async def test_a_merchants_payment_is_answered_without_fastapi(paid: list[tuple[Any, ...]]) -> None:
    inner = Inner()
    layer = payment_fast_path.PaymentFastPath(inner, route=PAYMENT_ROUTE)
    status, body, seen = await call(layer, headers(), [GOOD[:10], GOOD[10:]])
    assert (status, orjson.loads(body)) == (201, {"id": "p1", "amount": 10})
    assert inner.bodies == []
    [(db, merchant, key, request)] = paid
    assert (db, merchant, key, request.amount, request.currency) == ("db", MERCHANT, "k-1", 10, "EUR")
    assert seen["wakes"] == 1
    assert seen["scope"]["route"] is PAYMENT_ROUTE  # the metrics name the request after the route


@pytest.mark.parametrize(
    ("why", "request_headers", "body"),
    [
        ("no key", {"Idempotency-Key": "k", "Content-Type": "application/json"}, GOOD),
        ("unknown key", headers("nobody"), GOOD),
        ("a customer's key", headers("customer-key"), GOOD),
        ("not bearer", {**headers(), "Authorization": "Basic merchant-key"}, GOOD),
        ("text/plain", headers(**{"Content-Type": "text/plain"}), GOOD),
        ("application/jsonx", headers(**{"Content-Type": "application/jsonx"}), GOOD),
        ("not JSON", headers(), b"{"),
        ("invalid", headers(), orjson.dumps({"amount": -1})),
        ("NaN", headers(), b'{"amount": NaN}'),
    ],
)
async def test_anything_else_reaches_fastapi_with_its_body(
    paid: list[tuple[Any, ...]], why: str, request_headers: dict[str, str], body: bytes
) -> None:
    inner = Inner()
    layer = payment_fast_path.PaymentFastPath(inner, route=PAYMENT_ROUTE)
    status, _, _ = await call(layer, request_headers, [body[:3], body[3:]])
    assert status == 299, why
    assert inner.bodies == [body], why
    assert paid == [], why


async def test_other_routes_and_methods_are_not_touched(paid: list[tuple[Any, ...]]) -> None:
    inner = Inner()
    layer = payment_fast_path.PaymentFastPath(inner, route=PAYMENT_ROUTE)
    for method, path in (("GET", "/api/v1/payments"), ("POST", "/api/v1/payments/x/refunds"), ("POST", "/healthz")):
        status, _, seen = await call(layer, headers(), [GOOD], path=path, method=method)
        assert status == 299
        assert "route" not in seen["scope"]
    assert inner.bodies == [GOOD] * 3 and paid == []


@pytest.mark.parametrize(
    ("why", "request_headers", "body", "expected"),
    [
        ("a bad Idempotency-Key", headers(**{"Idempotency-Key": "é"}), GOOD, (400, "invalid-idempotency-key")),
        ("accounts unreachable", headers("down"), GOOD, (503, "service-unavailable")),
        (
            "a problem from the payment",
            headers(),
            orjson.dumps({**orjson.loads(GOOD), "amount": 666}),
            (422, "amount-too-large"),
        ),
    ],
)
async def test_problems_on_the_way_are_answered_as_fastapi_answers_them(
    paid: list[tuple[Any, ...]], why: str, request_headers: dict[str, str], body: bytes, expected: tuple[int, str]
) -> None:
    inner = Inner()
    layer = payment_fast_path.PaymentFastPath(inner, route=PAYMENT_ROUTE)
    status, answer, _ = await call(layer, request_headers, [body])
    assert (status, orjson.loads(answer)["type"]) == expected, why
    assert inner.bodies == []


async def test_a_client_gone_before_its_body_gets_nothing(paid: list[tuple[Any, ...]]) -> None:
    inner = Inner()
    layer = payment_fast_path.PaymentFastPath(inner, route=PAYMENT_ROUTE)
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "POST", "path": "/api/v1/payments", "app": None, "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await layer(scope, receive, send)
    assert sent == [] and inner.bodies == [] and paid == []
