"""Create the load test's world through the public API only, and write its keys and ids for locust.

FX rates between EUR, USD, GBP and JPY; merchants in several countries and currencies that onboard
themselves and set their own cashback offer (a few keep none, so ``cashback.status: none`` is
exercised); customers created by the back office with two funded accounts each in different
currencies, so that many payments go through an FX conversion.

    python -m loadtest.setup_data --base-url http://127.0.0.1:8080 --out results/loadtest/data.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

CURRENCIES = ("EUR", "USD", "GBP", "JPY")
# Units of each currency per 1 EUR; every pair's rate is derived from these so they agree.
PER_EUR = {"EUR": Decimal("1"), "USD": Decimal("1.0850"), "GBP": Decimal("0.8560"), "JPY": Decimal("161.20")}
# (country, currency, category, name): names in their own scripts, the API takes any Unicode.
MERCHANT_TEMPLATES = (
    ("FR", "EUR", "food", "Boulangerie Émile"),
    ("DE", "EUR", "fashion", "Kaufhaus Müller"),
    ("US", "USD", "electronics", "Gadget Barn"),
    ("GB", "GBP", "books", "Brontë & Sons Books"),
    ("JP", "JPY", "food", "寿司 さくら"),
    ("ES", "EUR", "travel", "Viajes Peñalara"),
    ("IT", "EUR", "fashion", "Sartoria Ferré"),
    ("US", "USD", "travel", "Route 66 Trips"),
)
CUSTOMER_HOME = (("FR", "EUR"), ("DE", "EUR"), ("US", "USD"), ("GB", "GBP"), ("JP", "JPY"))
OFFER_RATES_BPS = (100, 250, 500, 150, 0)  # one merchant in five has no offer
DEPOSIT_MINOR_UNITS = 5_000_000_000  # far more than a run spends: a 402 would be a bug, not the plan


def fx_rate(base: str, quote: str) -> str:
    """Quote units per 1 base unit, as the decimal string the API takes."""
    return str((PER_EUR[quote] / PER_EUR[base]).quantize(Decimal("0.000001")))


def admin_token(home: Path | None = None) -> str:
    """The back office key: ``$NEWBANK_ADMIN_TOKEN``, else ``$NEWBANK_HOME/admin-token``."""
    token = os.environ.get("NEWBANK_ADMIN_TOKEN", "").strip()
    if token:
        return token
    home = home or Path(os.environ.get("NEWBANK_HOME", ".newbank"))
    path = home / "admin-token"
    if not path.exists():
        sys.exit(f"setup_data: no admin key (set NEWBANK_ADMIN_TOKEN or NEWBANK_HOME; looked in {path})")
    return path.read_text().strip()


class Api:
    """A thin client that fails loudly with the platform's problem+json, and waits out 429s."""

    def __init__(
        self, client: httpx.AsyncClient, admin: str, concurrency: int = 16, rate_limit_wait_s: float = 1800
    ) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.gate = asyncio.Semaphore(concurrency)
        # Onboarding is limited per address (30 a minute by default): more merchants than that take
        # minutes, each call waiting as long as Retry-After says, up to this long in all.
        self.rate_limit_wait_s = rate_limit_wait_s
        self._told_rate_limited = False

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        anonymous: bool = False,
        money: bool = False,
        body: Any = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        headers = {} if anonymous else {"Authorization": f"Bearer {key}"} if key else dict(self.admin)
        if money:
            headers["Idempotency-Key"] = str(uuid.uuid4())  # reused on retry: a retry moves no money twice
        deadline = time.monotonic() + self.rate_limit_wait_s
        failures = 0
        async with self.gate:
            while True:
                try:
                    response = await self.client.request(method, path, json=body, headers=headers)
                except httpx.TransportError:
                    failures += 1
                    if failures > 5:
                        raise
                    await asyncio.sleep(1)
                    continue
                if response.status_code == 429 and time.monotonic() < deadline:
                    await self._wait_out(response, path)
                    continue
                if response.status_code >= 500 and failures < 5:
                    failures += 1
                    await asyncio.sleep(1)
                    continue
                if response.status_code not in expect:
                    raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text[:300]}")
                return response.json() if response.content else None

    async def _wait_out(self, response: httpx.Response, path: str) -> None:
        wait_s = float(response.headers.get("Retry-After", "1") or 1)
        if not self._told_rate_limited:
            self._told_rate_limited = True
            print(f"setup: {path} is rate limited ({response.text[:200]}); waiting as told", flush=True)
        await asyncio.sleep(wait_s)


async def create_merchant(api: Api, index: int) -> dict[str, Any]:
    country, currency, category, name = MERCHANT_TEMPLATES[index % len(MERCHANT_TEMPLATES)]
    body = {
        "name": f"{name} #{index}",
        "country": country,
        "currency": currency,
        "category": category,
        "website": f"https://shop{index}.example",
    }
    merchant = await api.call("POST", "/api/v1/merchants", body=body, anonymous=True)
    rate_bps = OFFER_RATES_BPS[index % len(OFFER_RATES_BPS)]
    if rate_bps:
        await set_offer(api, merchant, rate_bps)
    return {
        "id": merchant["id"],
        "api_key": merchant["api_key"],
        "country": country,
        "currency": currency,
        "category": category,
        "rate_bps": rate_bps,
    }


async def set_offer(api: Api, merchant: dict[str, Any], rate_bps: int, timeout_s: float = 20) -> None:
    """The partner store appears when partners consumes ``merchant.registered``: a 404 first is normal."""
    deadline = time.monotonic() + timeout_s
    while True:
        offer = await api.call(
            "PUT",
            f"/api/v1/partners/{merchant['id']}/offer",
            key=merchant["api_key"],
            body={"rate_bps": rate_bps},
            expect=(200, 201, 404),
        )
        if offer and offer.get("type") != "partner-not-found":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"partner store of merchant {merchant['id']} not there after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def create_customer(api: Api, index: int, rng: random.Random) -> dict[str, Any]:
    country, home_currency = CUSTOMER_HOME[index % len(CUSTOMER_HOME)]
    customer = await api.call(
        "POST",
        "/api/v1/customers",
        body={"name": f"Client·e {index} Ñandú", "country": country, "email": f"client{index}@example.com"},
    )
    other = rng.choice([c for c in CURRENCIES if c != home_currency])
    accounts = []
    for currency in (home_currency, other):
        account = await api.call("POST", "/api/v1/accounts", body={"customer_id": customer["id"], "currency": currency})
        await api.call(
            "POST",
            f"/api/v1/accounts/{account['id']}/deposits",
            money=True,
            body={"amount": DEPOSIT_MINOR_UNITS, "currency": currency},
        )
        accounts.append({"id": account["id"], "currency": currency, "customer_id": customer["id"]})
    return {"id": customer["id"], "api_key": customer["api_key"], "country": country, "accounts": accounts}


async def wait_offers_visible(api: Api, merchants: list[dict[str, Any]], timeout_s: float = 15) -> None:
    """Offers must be in force before the first payment, or the cashback check would be unfair."""
    deadline = time.monotonic() + timeout_s
    for merchant in merchants:
        if not merchant["rate_bps"]:
            continue
        while True:
            store = await api.call("GET", f"/api/v1/partners/{merchant['id']}", anonymous=True, expect=(200, 404))
            offer = (store or {}).get("offer") or {}
            if offer.get("rate_bps") == merchant["rate_bps"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"offer of merchant {merchant['id']} not visible after {timeout_s}s")
            await asyncio.sleep(0.25)


async def setup(base_url: str, admin: str, merchants: int, customers: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        api = Api(client, admin)
        await asyncio.gather(
            *(
                api.call("PUT", f"/api/v1/fx-rates/{b}/{q}", body={"rate": fx_rate(b, q)})
                for b in CURRENCIES
                for q in CURRENCIES
                if b != q
            )
        )
        made_merchants = list(await asyncio.gather(*(create_merchant(api, i) for i in range(merchants))))
        made_customers = list(await asyncio.gather(*(create_customer(api, i, rng) for i in range(customers))))
        await wait_offers_visible(api, made_merchants)
    return {
        "base_url": base_url,
        "created_at": time.time(),
        "merchants": made_merchants,
        "customers": made_customers,
        "accounts": [a for c in made_customers for a in c["accounts"]],
        "countries": sorted({m["country"] for m in made_merchants}),
        "fx_rates": {f"{b}/{q}": fx_rate(b, q) for b in CURRENCIES for q in CURRENCIES if b != q},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{os.environ.get('NEWBANK_PORT', '8080')}")
    parser.add_argument("--out", type=Path, default=Path("results/loadtest/data.json"))
    parser.add_argument("--merchants", type=int, default=24)
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args(argv)
    started = time.monotonic()
    data = asyncio.run(setup(args.base_url, admin_token(), args.merchants, args.customers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    print(
        f"setup: {len(data['merchants'])} merchants, {len(data['customers'])} customers, "
        f"{len(data['accounts'])} funded accounts, 12 FX rates in {time.monotonic() - started:.1f}s → {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
