"""Schemathesis against the partners and cashback services' OpenAPI documents (uvicorn processes):
no 5xx for any input, and every answer (status, content type, body) is one the document declares.
Bounded (few examples per operation) to stay fast."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from cashback_harness import ADMIN_TOKEN, Env
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from newbank.runtime import free_port, stop_pid

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def service_urls(cashback_env: Env, runtime_tmp: Path) -> Iterator[dict[str, str]]:
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for service in ("partners", "cashback"):
            port = free_port()
            log = runtime_tmp / f"{service}-openapi.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWBANK_")}
            env.update(
                NEWBANK_SERVICE=service,
                NEWBANK_INSTANCE_ID=f"{service}-openapi",
                NEWBANK_DATABASE_URL=cashback_env.dsn,
                NEWBANK_AMQP_URL=cashback_env.amqp_url,
                NEWBANK_ADMIN_TOKEN=ADMIN_TOKEN,
                NEWBANK_ACCOUNTS_INTERNAL_URL=cashback_env.keys.url,
                NEWBANK_LOG_LEVEL="WARNING",
            )
            argv = [sys.executable, "-m", "uvicorn", f"newbank.{service}.main:app", "--host", "127.0.0.1",
                    "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
            with open(log, "ab") as out:
                processes.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
            urls[service] = f"http://127.0.0.1:{port}"
        for service, url in urls.items():
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{service} not ready; log in {runtime_tmp}"
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            stop_pid(process.pid, timeout_s=10)


def exercise(base_url: str, token_for) -> list[str]:
    """Every operation, positive and negative cases; returns the failures (one line each)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:
                case.call_and_validate(headers={"Authorization": f"Bearer {token_for(case)}"}, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                continue
            except Exception as exc:  # one line per failing operation, all of them reported
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


async def test_partners_service_conforms(service_urls: dict[str, str]) -> None:
    # In a worker thread: the introspection stand-in answers from this test's event loop.
    failures = await asyncio.to_thread(exercise, service_urls["partners"], lambda case: ADMIN_TOKEN)
    assert not failures, "\n".join(failures)


async def test_cashback_service_conforms(env: Env, service_urls: dict[str, str]) -> None:
    customer_token, _ = env.keys.new("customer")

    def token_for(case) -> str:
        return customer_token if case.method.upper() == "POST" else ADMIN_TOKEN

    failures = await asyncio.to_thread(exercise, service_urls["cashback"], token_for)
    assert not failures, "\n".join(failures)
