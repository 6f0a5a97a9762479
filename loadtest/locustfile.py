"""NewBank Cashback under real traffic: merchants paying, some refunds, customers reading, visitors browsing.

Its data comes from ``setup_data.py`` (``$LOADTEST_DATA``, a JSON file); what it saw goes to
``$LOADTEST_RESULTS``: every payment it made (``payments-<pid>.jsonl``) and every status code it got
per request name (``statuses-<pid>.json``), so that ``checks.py`` can verify them through the API and
the scaling benchmark can cut a warm-up off. One file per locust process, since several may run.

``$LOADTEST_WAIT`` = "min,max" seconds between two tasks of one user (default "1.5,3.5": 1000 users
then offer about 400 requests/s). ``$LOADTEST_MODE=framework-ceiling`` swaps every user for one that
posts payment-shaped bodies to a trivial endpoint (the framework ceiling of the scaling benchmark).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

MODE = os.environ.get("LOADTEST_MODE", "platform")
_wait_min, _wait_max = (float(x) for x in os.environ.get("LOADTEST_WAIT", "1.5,3.5").split(","))
MAX_ATTEMPTS = 5  # first try + retries of one payment with one Idempotency-Key
RETRY_PAUSE_S = 0.2
PAYMENT = "POST /api/v1/payments"
PAYMENT_RETRY = "POST /api/v1/payments [retry]"
REFUND = "POST /api/v1/payments/{id}/refunds"
REFUND_RETRY = "POST /api/v1/payments/{id}/refunds [retry]"

# Amounts in minor units, per payment currency: ordinary card payments, a few units to a few hundred.
AMOUNT_RANGE = {"JPY": (100, 30_000)}
DEFAULT_AMOUNT_RANGE = (100, 20_000)


def _load_data() -> dict[str, Any]:
    path = os.environ.get("LOADTEST_DATA")
    if not path or MODE != "platform":
        return {"merchants": [], "customers": [], "accounts": []}
    return json.loads(Path(path).read_text())


DATA = _load_data()
RESULTS = Path(os.environ.get("LOADTEST_RESULTS", "results/loadtest"))

# What this process saw; written at test stop and at exit.
_payments: list[dict[str, Any]] = []
_refunded: dict[str, int] = {}
_statuses: dict[str, dict[str, int]] = {}


@events.request.add_listener
def _count_status(request_type: str, name: str, response: Any = None, exception: Any = None, **_: Any) -> None:
    status = str(getattr(response, "status_code", 0) or 0) if response is not None else "0"
    by_status = _statuses.setdefault(f"{request_type} {name}", {})
    by_status[status] = by_status.get(status, 0) + 1


def _write_results(**_: Any) -> None:
    if not _payments and not _statuses:
        return  # the master of a distributed run sees no requests of its own
    RESULTS.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    with (RESULTS / f"payments-{pid}.jsonl").open("w") as handle:
        for record in _payments:
            refunded = _refunded.get(record.get("payment_id") or "", 0)
            handle.write(json.dumps(record | {"refunded": refunded}) + "\n")
    (RESULTS / f"statuses-{pid}.json").write_text(json.dumps(_statuses))


events.test_stop.add_listener(_write_results)
events.quitting.add_listener(_write_results)


def _retryable(status: int, body: bytes | None) -> bool:
    """A failure the merchant may retry with the same key: the platform's, not the request's."""
    if status == 0 or status >= 500:
        return True
    return status == 409 and b"idempotency-key-in-progress" in (body or b"")


class MerchantUser(FastHttpUser):
    """A web merchant's checkout: most of the load. Each payment has its own Idempotency-Key."""

    abstract = MODE != "platform"
    weight = 8
    wait_time = between(_wait_min, _wait_max)

    def on_start(self) -> None:
        self.merchant = random.choice(DATA["merchants"])
        self.auth = {"Authorization": f"Bearer {self.merchant['api_key']}"}
        self.low, self.high = AMOUNT_RANGE.get(self.merchant["currency"], DEFAULT_AMOUNT_RANGE)
        self.recent: deque[tuple[str, int]] = deque(maxlen=50)  # (payment id, amount) not yet refunded

    def _post_with_retries(self, path: str, name: str, retry_name: str, body: dict[str, Any]) -> tuple[int, Any, int]:
        """POST with one Idempotency-Key, retried on a 5xx, a connection error or a 409 in-progress."""
        headers = self.auth | {"Idempotency-Key": str(uuid.uuid4())}
        status, payload = 0, None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.client.post(
                path, json=body, headers=headers, name=name if attempt == 1 else retry_name, catch_response=True
            ) as response:
                status = response.status_code or 0
                if status == 201:
                    payload = response.json()
                    response.success()
                    return status, payload, attempt
                response.failure(f"HTTP {status}: {(response.text or '')[:200]}")
                if not _retryable(status, response.content):
                    return status, None, attempt
            # Exponential back-off with jitter: retries of many merchants must not arrive as one wave.
            time.sleep(RETRY_PAUSE_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
        return status, payload, MAX_ATTEMPTS

    @task(20)
    def pay(self) -> None:
        account = random.choice(DATA["accounts"])
        body = {
            "account_id": account["id"],
            "amount": random.randint(self.low, self.high),
            "currency": self.merchant["currency"],
            "reference": f"order-{uuid.uuid4().hex[:12]}",
        }
        started = time.time()
        status, payment, attempts = self._post_with_retries("/api/v1/payments", PAYMENT, PAYMENT_RETRY, body)
        record: dict[str, Any] = {
            "started_at": started,
            "latency_ms": (time.time() - started) * 1000,
            "status": status,
            "attempts": attempts,
            "account_id": account["id"],
            "merchant_id": self.merchant["id"],
            "amount": body["amount"],
            "currency": body["currency"],
        }
        if payment:
            record |= {"payment_id": payment["id"], "created_at": payment.get("created_at")}
            self.recent.append((payment["id"], body["amount"]))
        _payments.append(record)

    @task(1)
    def refund(self) -> None:
        """Half the refunds give everything back, half give back half."""
        if not self.recent:
            return
        payment_id, amount = self.recent.popleft()
        refund = amount if random.random() < 0.5 else max(1, amount // 2)
        status, _, _ = self._post_with_retries(
            f"/api/v1/payments/{payment_id}/refunds", REFUND, REFUND_RETRY, {"amount": refund}
        )
        if status == 201:
            _refunded[payment_id] = _refunded.get(payment_id, 0) + refund

    @task(1)
    def list_payments(self) -> None:
        self.client.get("/api/v1/payments?limit=20", headers=self.auth, name="GET /api/v1/payments")

    @task(1)
    def read_settlement(self) -> None:
        self.client.get("/api/v1/merchants/me", headers=self.auth, name="GET /api/v1/merchants/me")


class CustomerUser(FastHttpUser):
    """A customer checking the balance and the cashback earned."""

    abstract = MODE != "platform"
    weight = 1
    wait_time = between(_wait_min, _wait_max)

    def on_start(self) -> None:
        self.customer = random.choice(DATA["customers"])
        self.auth = {"Authorization": f"Bearer {self.customer['api_key']}"}

    @task(3)
    def read_account(self) -> None:
        account = random.choice(self.customer["accounts"])
        self.client.get(f"/api/v1/accounts/{account['id']}", headers=self.auth, name="GET /api/v1/accounts/{id}")

    @task(2)
    def read_cashback(self) -> None:
        account = random.choice(self.customer["accounts"])
        self.client.get(
            f"/api/v1/cashback/accounts/{account['id']}?limit=20",
            headers=self.auth,
            name="GET /api/v1/cashback/accounts/{id}",
        )


class VisitorUser(FastHttpUser):
    """Someone browsing partner stores, with no key at all."""

    abstract = MODE != "platform"
    weight = 1
    wait_time = between(_wait_min, _wait_max)

    @task(3)
    def browse(self) -> None:
        self.client.get("/api/v1/partners", name="GET /api/v1/partners")

    @task(2)
    def browse_country(self) -> None:
        country = random.choice(DATA.get("countries") or ["FR"])
        self.client.get(f"/api/v1/partners?country={country}", name="GET /api/v1/partners?country=")

    @task(2)
    def open_store(self) -> None:
        merchant = random.choice(DATA["merchants"])
        self.client.get(f"/api/v1/partners/{merchant['id']}", name="GET /api/v1/partners/{id}")


class FrameworkCeilingUser(FastHttpUser):
    """The framework ceiling: the same payment-shaped POST to an endpoint that does nothing."""

    abstract = MODE != "framework-ceiling"
    wait_time = between(_wait_min, _wait_max)

    @task
    def pay(self) -> None:
        body = {"account_id": str(uuid.uuid4()), "amount": random.randint(100, 20_000), "currency": "EUR"}
        headers = {"Authorization": "Bearer ceiling", "Idempotency-Key": str(uuid.uuid4())}
        started = time.time()
        with self.client.post(
            "/api/v1/payments", json=body, headers=headers, name=PAYMENT, catch_response=True
        ) as response:
            status = response.status_code or 0
            if status != 201:
                response.failure(f"HTTP {status}")
        _payments.append({"started_at": started, "latency_ms": (time.time() - started) * 1000, "status": status})
