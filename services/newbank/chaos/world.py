"""The chaos world: merchants with offers and funded customer accounts, made through the public API.

Merchant onboarding is rate limited per client address (30 a minute), so one world is made per
platform and kept in ``<home>/chaos/world.json`` (mode 600: it holds API keys, like the admin-token
file next to it); every later run against the same platform reuses it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from newbank.runtime.layout import Layout

CURRENCY = "EUR"
# One merchant in four has no offer, so ``cashback.status: none`` is exercised under the fault too.
OFFER_RATES_BPS = (100, 250, 0, 500)
DEPOSIT = 10_000_000_000  # never runs out during a run: a 402 would hide a real failure


@dataclass
class Merchant:
    id: str
    api_key: str
    rate_bps: int


@dataclass
class Account:
    id: str
    customer_id: str


@dataclass
class World:
    merchants: list[Merchant]
    accounts: list[Account]

    def rate_of(self, merchant_id: str) -> int:
        return next(m.rate_bps for m in self.merchants if m.id == merchant_id)


@dataclass
class Target:
    """The running platform a chaos run acts on: its layout (PIDs, ports) and its public API."""

    layout: Layout

    @property
    def base_url(self) -> str:
        return self.layout.ingress_url

    @property
    def admin_token(self) -> str:
        return os.environ.get("NEWBANK_ADMIN_TOKEN") or self.layout.admin_token_file.read_text().strip()

    @property
    def world_file(self) -> Path:
        return self.layout.home / "chaos" / "world.json"

    def bank_dsn(self) -> str:
        return self.layout.pg_cluster().multi_host_dsn("bank")

    def cashback_dsn(self) -> str:
        return self.layout.pg_cluster().multi_host_dsn("cashback")


def _call(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    token: str | None,
    body: Any,
    money: bool = False,
    wait_404: bool = False,
) -> dict[str, Any]:
    """One setup request, retried (same key) on transport errors, 5xx, 429 and — for a partner store,
    which the partners service makes from the ``merchant.registered`` event — on 404 for a while."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if money:
        headers["Idempotency-Key"] = f"chaos-setup-{uuid.uuid4()}"
    for _ in range(100):
        try:
            response = client.request(method, path, json=body, headers=headers)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        retry = response.status_code >= 500 or response.status_code == 429
        if not (retry or (wait_404 and response.status_code == 404)):
            break
        time.sleep(0.2)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"chaos setup: {method} {path} → {response.status_code}: {response.text[:300]}")
    return dict(response.json())


def create_world(target: Target, merchants: int = 20, customers: int = 40) -> World:
    """Merchants that onboard themselves and set an offer; customers with one funded account each.

    Enough customers that crediting cashback is not one hot row: every credit updates its account's
    cashback balance under a row lock held through the synchronous commit.
    """
    admin = target.admin_token
    made_merchants: list[Merchant] = []
    made_accounts: list[Account] = []
    with httpx.Client(base_url=target.base_url, timeout=30) as client:
        for i in range(merchants):
            body = {"name": f"Chaos Shop {i}", "country": "FR", "currency": CURRENCY, "category": "food"}
            merchant = _call(client, "POST", "/api/v1/merchants", token=None, body=body)
            rate = OFFER_RATES_BPS[i % len(OFFER_RATES_BPS)]
            if rate:
                _call(
                    client,
                    "PUT",
                    f"/api/v1/partners/{merchant['id']}/offer",
                    token=merchant["api_key"],
                    body={"rate_bps": rate},
                    wait_404=True,
                )
            made_merchants.append(Merchant(merchant["id"], merchant["api_key"], rate))
        for i in range(customers):
            customer = _call(
                client, "POST", "/api/v1/customers", token=admin, body={"name": f"Chaos Client {i}", "country": "FR"}
            )
            account = _call(
                client,
                "POST",
                "/api/v1/accounts",
                token=admin,
                body={"customer_id": customer["id"], "currency": CURRENCY},
            )
            _call(
                client,
                "POST",
                f"/api/v1/accounts/{account['id']}/deposits",
                token=admin,
                money=True,
                body={"amount": DEPOSIT, "currency": CURRENCY},
            )
            made_accounts.append(Account(account["id"], customer["id"]))
    return World(made_merchants, made_accounts)


def load_or_create_world(target: Target) -> World:
    """The platform's chaos world, made on first use."""
    path = target.world_file
    if path.exists():
        data = json.loads(path.read_text())
        return World([Merchant(**m) for m in data["merchants"]], [Account(**a) for a in data["accounts"]])
    world = create_world(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_text(json.dumps(asdict(world)))
    return world
