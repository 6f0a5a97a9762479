"""A burst of keys new to a service: introspected one request per key, against batched (one run).

At the start of a load test a thousand users arrive within seconds, with keys that the transaction
and cashback services have not cached. Against a running local platform (``$NEWBANK_HOME``, as
``newbank up`` made it) this creates ``--keys`` customers per round through the ingress, so that every
round asks the accounts service about keys it has never answered, then resolves one round's keys all
at once through a fresh ``IntrospectionClient``, alternating two modes: ``per-key`` (one request per
key, as many at once as asked: the client before the fifteenth session) and ``batched`` (the client's
defaults). Per round it prints the time until the last answer, the requests sent, the 503s, and the CPU
time per key of the accounts service and of this process, the caller (from /proc); then per mode the
median time and the CPU over all its rounds, and the ratios of the two modes.

    NEWBANK_HOME=/tmp/nb .venv/bin/python -m loadtest.bench_introspection --keys 500 --rounds 3

Run it on an idle platform, and again while ``newbank loadtest`` runs, to see it on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtest.cpu import process_cpu_seconds
from loadtest.setup_data import admin_token
from newbank.auth import IntrospectionClient
from newbank.errors import ProblemError

MODES = {"per-key": {"max_batch": 1, "max_in_flight": 1_000_000}, "batched": {}}


@dataclass
class Round:
    mode: str
    keys: int
    seconds: float
    requests: int
    unavailable: int
    accounts_cpu_s: float
    caller_cpu_s: float  # this process: the side of a transaction instance or the cashback service

    @property
    def cpu_ms_per_key(self) -> float:
        return 1000 * self.accounts_cpu_s / self.keys

    @property
    def caller_ms_per_key(self) -> float:
        return 1000 * self.caller_cpu_s / self.keys

    def line(self) -> str:
        return (
            f"{self.mode:8}  {self.keys} keys  {self.seconds * 1000:8.1f} ms to the last answer  "
            f"{self.requests:5} requests  {self.unavailable:4} × 503  "
            f"CPU accounts {self.accounts_cpu_s * 1000:6.0f} ms ({self.cpu_ms_per_key:.2f} ms/key), "
            f"caller {self.caller_cpu_s * 1000:6.0f} ms ({self.caller_ms_per_key:.2f} ms/key)"
        )


def accounts_service(home: Path) -> tuple[str, int]:
    """The first accounts instance's address and PID."""
    rows = json.loads((home / "instances.json").read_text())
    row = next(r for r in rows if r.get("service") == "accounts" and r.get("pid"))
    return f"http://127.0.0.1:{row['port']}", int(row["pid"])


async def new_customer_keys(ingress: str, admin: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {admin}"}
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=ingress, timeout=30) as client:

        async def one(n: int) -> str:
            async with gate:
                body = {"name": f"Burst {n}", "country": "DE", "email": f"burst-{time.time_ns()}-{n}@example.com"}
                response = await client.post("/api/v1/customers", json=body, headers=headers)
                response.raise_for_status()
                return response.json()["api_key"]

        return list(await asyncio.gather(*(one(n) for n in range(count))))


class CountingTransport(httpx.AsyncBaseTransport):
    """The client's own transport (its pool, its limits), counting the requests that go through."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def burst(mode: str, url: str, admin: str, pid: int, keys: list[str]) -> Round:
    client = IntrospectionClient(url, admin, **MODES[mode])
    counting = CountingTransport(client._client._transport)
    client._client._transport = counting
    cpu_before, caller_before = process_cpu_seconds(pid), process_cpu_seconds(os.getpid())
    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(client.resolve(key) for key in keys), return_exceptions=True)
        seconds = time.perf_counter() - started
    finally:
        await client.aclose()
    cpu, caller = process_cpu_seconds(pid) - cpu_before, process_cpu_seconds(os.getpid()) - caller_before
    unavailable = sum(isinstance(o, ProblemError) and o.status == 503 for o in outcomes)
    failed = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, ProblemError)]
    wrong = [o for o in outcomes if not isinstance(o, BaseException) and (o is None or o.kind != "customer")]
    if failed or wrong:
        raise SystemExit(f"{mode}: failures {failed[:3]}, answers that are not the customers' {wrong[:3]}")
    return Round(mode, len(keys), seconds, counting.requests, unavailable, cpu, caller)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=500, help="keys per round (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode, alternated (default 3)")
    parser.add_argument("--ingress", default=f"http://127.0.0.1:{os.environ.get('NEWBANK_PORT', '8080')}")
    args = parser.parse_args()
    home = Path(os.environ.get("NEWBANK_HOME", ".newbank"))
    admin = admin_token(home)
    url, pid = accounts_service(home)
    order = [mode for _ in range(args.rounds) for mode in MODES]
    print(f"creating {args.keys * len(order)} customers through {args.ingress} ...", flush=True)
    keys = await new_customer_keys(args.ingress, admin, args.keys * len(order))
    await asyncio.sleep(2)  # let the accounts service settle after the creations
    rounds = []
    for n, mode in enumerate(order):
        rounds.append(await burst(mode, url, admin, pid, keys[n * args.keys : (n + 1) * args.keys]))
        print(rounds[-1].line(), flush=True)
        await asyncio.sleep(1)
    totals = {}
    for mode in MODES:
        mine = [r for r in rounds if r.mode == mode]
        keys_asked = sum(r.keys for r in mine)
        totals[mode] = (
            statistics.median(r.seconds for r in mine),
            sum(r.accounts_cpu_s for r in mine),
            sum(r.caller_cpu_s for r in mine),
        )
        print(
            f"{mode:8} (median time, CPU over all its rounds): {totals[mode][0] * 1000:.1f} ms to the last answer; "
            f"CPU per key: accounts {1000 * totals[mode][1] / keys_asked:.2f} ms, "
            f"caller {1000 * totals[mode][2] / keys_asked:.2f} ms; {sum(r.unavailable for r in mine)} × 503"
        )
    print(
        "per-key ÷ batched: "
        + ", ".join(
            _ratio(totals["per-key"][i], totals["batched"][i], what)
            for i, what in enumerate(["the time", "the accounts CPU", "the caller's CPU"])
        )
    )


def _ratio(slow: float, fast: float, what: str) -> str:
    """CPU times come in 10 ms ticks: a batched total of none says only "more than against one tick"."""
    if fast <= 0:
        return f"> {slow / 0.01:.0f}× {what} (batched: under one 10 ms tick)"
    return f"{slow / fast:.0f}× {what}"


if __name__ == "__main__":
    asyncio.run(main())
