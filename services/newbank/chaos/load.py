"""The payment load of a chaos run: merchants paying with fresh keys, retrying with the SAME key.

A client that is told nothing definitive — a connection error, a timeout, a 5xx, a 429 or a 409
``idempotency-key-in-progress`` — sends the very same request again with the same Idempotency-Key
until it gets a definitive answer (201, or a 4xx that says no) or gives up after ``give_up_s``. That
is what API.md promises is safe "at any time, also after a failover", and it is what the checks then
hold the platform to: a key acknowledged once exists once. Every attempt is kept with its wall-clock
times, so that the report can tell when writes failed and when they came back.

Each payment's ``reference`` is its Idempotency-Key, so the checks can count rows per key in the
database without trusting anything the API said.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from newbank.chaos.world import Target, World

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class Attempt:
    sent: float  # wall-clock seconds
    done: float
    outcome: str  # "201", "402", "503", "409 idempotency-key-in-progress", "ConnectError", ...

    @property
    def ok(self) -> bool:
        return self.outcome == "201"


@dataclass
class Order:
    """One payment as the client sees it: one key, every attempt made for it, the answer it got."""

    key: str
    merchant_id: str
    account_id: str
    amount: int
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None  # the definitive status; None = gave up (never got one)
    payment_id: str | None = None
    acked_at: float | None = None
    problem: str = ""
    ids_seen: set[str] = field(default_factory=set)  # a replay must name the same payment

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


@dataclass
class Read:
    sent: float
    done: float
    ok: bool
    outcome: str


def _classify(response: httpx.Response) -> tuple[bool, str]:
    """(retry with the same key?, outcome label)."""
    status = response.status_code
    if status == 409:
        kind = ""
        try:
            kind = str(response.json().get("type", ""))
        except ValueError:
            pass
        return kind.endswith("idempotency-key-in-progress"), f"409 {kind}".strip()
    return status in RETRY_STATUSES or status >= 500, str(status)


class PaymentLoad:
    """``workers`` merchants paying in a loop until ``stop()``; a bounded retry per payment."""

    def __init__(
        self,
        target: Target,
        world: World,
        run_id: str,
        *,
        workers: int = 20,
        pause_s: float = 0.15,
        give_up_s: float = 90.0,
        readers: int = 2,
    ) -> None:
        self.target, self.world, self.run_id = target, world, run_id
        self.workers, self.pause_s, self.give_up_s, self.readers = workers, pause_s, give_up_s, readers
        self.orders: list[Order] = []
        self.reads: list[Read] = []
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._stop = asyncio.Event()
        self._rng = random.Random(run_id)

    def stop(self) -> None:
        self.stopped_at = time.time()
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()``; returns once every started payment has its answer (or gave up)."""
        self.started_at = time.time()
        limits = httpx.Limits(max_connections=self.workers + self.readers + 4, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=self.target.base_url, timeout=15, limits=limits) as client:
            tasks = [self._payer(client, i) for i in range(self.workers)]
            tasks += [self._reader(client, i) for i in range(self.readers)]
            await asyncio.gather(*tasks)

    async def _payer(self, client: httpx.AsyncClient, worker: int) -> None:
        merchant = self.world.merchants[worker % len(self.world.merchants)]
        n = 0
        while not self._stop.is_set():
            n += 1
            account = self._rng.choice(self.world.accounts)
            order = Order(f"chaos-{self.run_id}-{worker}-{n}", merchant.id, account.id, self._rng.randint(100, 50_000))
            self.orders.append(order)
            await self._pay(client, merchant.api_key, order)
            try:
                await asyncio.wait_for(self._stop.wait(), self.pause_s)
            except TimeoutError:
                pass

    async def _pay(self, client: httpx.AsyncClient, api_key: str, order: Order) -> None:
        headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": order.key}
        body = {"account_id": order.account_id, "amount": order.amount, "currency": "EUR", "reference": order.key}
        first = time.time()
        delay = 0.1
        while True:
            sent = time.time()
            try:
                response = await client.post("/api/v1/payments", json=body, headers=headers)
                retry, outcome = _classify(response)
            except httpx.TransportError as exc:
                response, retry, outcome = None, True, type(exc).__name__
            order.attempts.append(Attempt(sent, time.time(), outcome))
            if response is not None and response.status_code == 201:
                payment_id = str(response.json()["id"])
                order.ids_seen.add(payment_id)
                order.status, order.payment_id, order.acked_at = 201, payment_id, time.time()
                return
            if not retry:
                assert response is not None
                order.status, order.problem = response.status_code, response.text[:200]
                return
            if time.time() - first > self.give_up_s:
                order.problem = f"gave up after {len(order.attempts)} attempts (last: {outcome})"
                return
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 0.5)  # short: the window measured should be the platform's, not ours

    async def _reader(self, client: httpx.AsyncClient, reader: int) -> None:
        """Lists (served by the replica when there is one): they must keep answering too."""
        merchant = self.world.merchants[reader % len(self.world.merchants)]
        headers = {"Authorization": f"Bearer {merchant.api_key}"}
        while not self._stop.is_set():
            sent = time.time()
            try:
                response = await client.get("/api/v1/payments", params={"limit": 5}, headers=headers)
                self.reads.append(Read(sent, time.time(), response.status_code == 200, str(response.status_code)))
            except httpx.TransportError as exc:
                self.reads.append(Read(sent, time.time(), False, type(exc).__name__))
            try:
                await asyncio.wait_for(self._stop.wait(), 0.25)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ figures
    @property
    def acknowledged(self) -> list[Order]:
        return [o for o in self.orders if o.acknowledged]

    @property
    def unresolved(self) -> list[Order]:
        return [o for o in self.orders if o.status is None]

    @property
    def refused(self) -> list[Order]:
        return [o for o in self.orders if o.status not in (None, 201)]

    def failed_attempts(self) -> list[Attempt]:
        return sorted((a for o in self.orders for a in o.attempts if not a.ok), key=lambda a: a.done)

    def unavailability(self, since: float) -> tuple[float, float, float] | None:
        """(first failed write, first write sent after it that succeeded, window s), from ``since`` on.

        "A write succeeds again" means a request *sent after* the first failure got its 201: requests
        already in flight when the fault hit do not shorten the window.
        """
        failures = [a for a in self.failed_attempts() if a.done >= since]
        if not failures:
            return None
        first_fail = max(since, min(a.sent for a in failures))  # a request in flight at the fault counts from it
        later_ok = [a.done for o in self.orders for a in o.attempts if a.ok and a.sent >= failures[0].done]
        back = min(later_ok) if later_ok else float("nan")
        return first_fail, back, back - first_fail
