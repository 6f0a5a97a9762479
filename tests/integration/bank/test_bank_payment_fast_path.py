"""The payment fast path answers exactly as FastAPI's route does.

The bank's instances run with the fast path (the default). One more instance runs here with
``NEWBANK_FAST_PATHS=false``, so every request reaches the FastAPI route. Each request below goes to
both; the answers must match: status, content type, replay header and body (a payment's id and
time aside), and the money must have moved once per 201.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from bank_api import Bank, BankServices, ServiceProcess, service_env

from newbank.runtime import PgCluster, RabbitMQ, free_port

pytestmark = pytest.mark.integration

VOLATILE = ("id", "created_at")


@pytest.fixture
async def plain(
    bank_services: BankServices, pg_cluster: PgCluster, rabbitmq: RabbitMQ, runtime_tmp: Path
) -> AsyncIterator[httpx.AsyncClient]:
    instance = ServiceProcess("transactions-plain", free_port(), runtime_tmp / "transactions-plain.log")
    env = service_env("transactions", "transactions-plain", pg_cluster, rabbitmq, bank_services.accounts.url)
    env["NEWBANK_FAST_PATHS"] = "false"
    instance.start("newbank.transactions.main:app", env)
    try:
        async with httpx.AsyncClient(base_url=instance.url, timeout=30) as client:
            yield client
    finally:
        instance.stop()


def _comparable(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if response.status_code == 201:
        body = {name: value for name, value in body.items() if name not in VOLATILE}
    return {
        "status": response.status_code,
        "content-type": response.headers.get("content-type"),
        "replayed": response.headers.get("idempotent-replayed"),
        "body": body,
    }


async def test_every_kind_of_payment_request_gets_the_same_answer_both_ways(
    bank: Bank, plain: httpx.AsyncClient
) -> None:
    customer, account = await bank.funded_account("EUR", deposit=1_000_000)
    _, poor = await bank.funded_account("EUR", deposit=5)
    merchant = await bank.merchant("EUR")
    key = merchant["api_key"]
    good = {"account_id": account["id"], "amount": 125, "currency": "EUR", "reference": "order 7"}
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("a payment", {**bank.auth(key, "K"), **json_type}, _json(good)),
        (
            "charset in the content type",
            {**bank.auth(key, "K"), "Content-Type": "application/json; charset=utf-8"},
            _json(good),
        ),
        ("unknown fields ignored", {**bank.auth(key, "K"), **json_type}, _json({**good, "tip": 5})),
        ("no reference", {**bank.auth(key, "K"), **json_type}, _json({**good, "reference": None})),
        (
            "a key given twice: the last counts, as in the standard library's json",
            {**bank.auth(key, "K"), **json_type},
            b'{"account_id": "%s", "amount": 999999, "amount": 125, "currency": "EUR"}' % account["id"].encode(),
        ),
        ("no key", {"Idempotency-Key": "K", **json_type}, _json(good)),
        ("unknown key", {**bank.auth("nb_unknown", "K"), **json_type}, _json(good)),
        ("not a bearer key", {"Authorization": f"Basic {key}", "Idempotency-Key": "K", **json_type}, _json(good)),
        ("a customer's key", {**bank.auth(customer["api_key"], "K"), **json_type}, _json(good)),
        ("the admin key", {**bank.auth(bank.services.admin_token, "K"), **json_type}, _json(good)),
        ("no Idempotency-Key", {**bank.auth(key), **json_type}, _json(good)),
        ("a bad Idempotency-Key", {**bank.auth(key, "x" * 256), **json_type}, _json(good)),
        ("not JSON", {**bank.auth(key, "K"), **json_type}, b'{"account_id": '),
        ("text/plain", {**bank.auth(key, "K"), "Content-Type": "text/plain"}, _json(good)),
        ("no content type", bank.auth(key, "K"), _json(good)),
        ("no body", {**bank.auth(key, "K"), **json_type}, b""),
        ("a list", {**bank.auth(key, "K"), **json_type}, b"[]"),
        ("a negative amount", {**bank.auth(key, "K"), **json_type}, _json({**good, "amount": -1})),
        ("a fractional amount", {**bank.auth(key, "K"), **json_type}, _json({**good, "amount": 1.5})),
        ("a bad currency", {**bank.auth(key, "K"), **json_type}, _json({**good, "currency": "euro"})),
        ("a bad account id", {**bank.auth(key, "K"), **json_type}, _json({**good, "account_id": "nope"})),
        ("an unknown account", {**bank.auth(key, "K"), **json_type}, _json({**good, "account_id": str(uuid.uuid4())})),
        ("a currency with no rate", {**bank.auth(key, "K"), **json_type}, _json({**good, "currency": "CHF"})),
        ("insufficient funds", {**bank.auth(key, "K"), **json_type}, _json({**good, "account_id": poor["id"]})),
        (
            "NaN",
            {**bank.auth(key, "K"), **json_type},
            b'{"account_id": "%s", "amount": NaN, "currency": "EUR"}' % account["id"].encode(),
        ),
    ]
    fast = bank.transactions[0]
    moved = 0
    for name, headers, body in cases:
        answers = []
        for client in (fast, plain):
            # each request its own Idempotency-Key, so that neither answer is the other's replay
            sent = (
                {**headers, "Idempotency-Key": f"{name}-{uuid.uuid4()}"}
                if headers.get("Idempotency-Key") == "K"
                else headers
            )
            answers.append(await client.post("/api/v1/payments", content=body, headers=sent))
        assert _comparable(answers[0]) == _comparable(answers[1]), name
        assert answers[0].status_code < 500, (name, answers[0].text)
        moved += sum(answer.status_code == 201 for answer in answers)
    assert moved == 10  # the first five cases, both ways
    assert await bank.balance(account["id"]) == 1_000_000 - moved * 125


async def test_a_replay_and_a_reused_key_get_the_same_answers_both_ways(bank: Bank, plain: httpx.AsyncClient) -> None:
    _, account = await bank.funded_account("EUR", deposit=10_000)
    merchant = await bank.merchant("EUR")
    body = {"account_id": account["id"], "amount": 300, "currency": "EUR"}
    answers: dict[str, list[httpx.Response]] = {}
    for label, client in (("fast", bank.transactions[0]), ("plain", plain)):
        headers = bank.auth(merchant["api_key"], f"{label}-{uuid.uuid4()}")
        first = await client.post("/api/v1/payments", json=body, headers=headers)
        # the replay goes to the other kind of instance: both read the same stored answer
        other = plain if client is not plain else bank.transactions[0]
        replay = await other.post("/api/v1/payments", json=body, headers=headers)
        reused = await client.post("/api/v1/payments", json={**body, "amount": 301}, headers=headers)
        assert first.status_code == replay.status_code == 201, (first.text, replay.text)
        assert reused.status_code == 409, reused.text
        assert replay.json() == first.json()
        assert replay.headers.get("idempotent-replayed") == "true"
        answers[label] = [first, replay, reused]
    for fast, plain_answer in zip(answers["fast"], answers["plain"], strict=True):
        assert _comparable(fast) == _comparable(plain_answer)
    assert await bank.balance(account["id"]) == 10_000 - 2 * 300


def _json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
