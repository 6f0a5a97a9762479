"""Schemathesis against both Bank services' OpenAPI documents: no 5xx, and every answer (status,
content type, body) is one the document declares. Bounded (few examples per operation) to stay fast."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from bank_api import BankServices, client_address
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="session")
def merchant_key(bank_services: BankServices) -> str:
    response = httpx.post(
        f"{bank_services.accounts.url}/api/v1/merchants",
        json={"name": "Schema Shop", "country": "DE", "currency": "EUR"},
        headers={"X-Forwarded-For": client_address()},
    )
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


@pytest.fixture(scope="session")
def accounts_schema(bank_services: BankServices):
    return schemathesis.openapi.from_url(f"{bank_services.accounts.url}/openapi.json")


@pytest.fixture(scope="session")
def transactions_schema(bank_services: BankServices):
    return schemathesis.openapi.from_url(f"{bank_services.transactions[0].url}/openapi.json")


def exercise(schema, token_for) -> list[str]:
    """Every operation, positive and negative cases; returns the failures (one line each)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:
                headers = {"Authorization": f"Bearer {token_for(case)}"}
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # no negative case exists (an operation without inputs)
                continue
            except Exception as exc:  # one line per failing operation, all of them reported
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


def test_accounts_service_conforms(accounts_schema, bank_services: BankServices, merchant_key: str) -> None:
    def token_for(case) -> str:
        return merchant_key if case.path == "/api/v1/merchants/me" else bank_services.admin_token

    failures = exercise(accounts_schema, token_for)
    assert not failures, "\n".join(failures)


def test_transaction_service_conforms(transactions_schema, bank_services: BankServices, merchant_key: str) -> None:
    def token_for(case) -> str:
        return bank_services.admin_token if case.method == "GET" and "{" in case.path else merchant_key

    failures = exercise(transactions_schema, token_for)
    assert not failures, "\n".join(failures)
