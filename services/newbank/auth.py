"""API keys and the caller's identity.

Keys are random (192 bits), shown once, stored as SHA-256 digests: with that much entropy a fast hash
is enough and the lookup is by digest, so no stored secret is ever compared byte by byte. The admin
key comes from the environment and is compared in constant time.

The accounts service owns the keys; the other services ask its internal introspection endpoint
(RFC 7662 style) and keep the answer in a short cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

import httpx
from fastapi import Depends, Request

from newbank.errors import ProblemError
from newbank.observability import KEY_INTROSPECTION_DURATION, KEYS_UNCHECKED

log = logging.getLogger("newbank.auth")

PrincipalKind = Literal["admin", "merchant", "customer"]
KEY_PREFIX = {"merchant": "nbm_", "customer": "nbc_"}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: UUID | None = None  # None for the admin

    @property
    def scope(self) -> str:
        """The idempotency scope: keys are scoped per caller."""
        return "admin" if self.kind == "admin" else f"{self.kind}:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"


def generate_api_key(kind: Literal["merchant", "customer"]) -> str:
    return KEY_PREFIX[kind] + secrets.token_urlsafe(24)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_admin_token(candidate: str, admin_token: str) -> bool:
    return bool(admin_token) and hmac.compare_digest(candidate.encode(), admin_token.encode())


def bearer_token(request: Request) -> str | None:
    return bearer_token_of(request.headers.get("authorization"))


def bearer_token_of(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


KEEPALIVE_EXPIRY_S = 2.0  # below uvicorn's --timeout-keep-alive (5 s by default)
# The connection failed before an answer came; a timeout is not retried (the service is slow, not gone).
_CONNECTION_LOST = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

UNAUTHORIZED = ProblemError(401, "unauthorized", "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})


class KeyResolver(Protocol):
    async def resolve(self, token: str) -> Principal | None: ...


@dataclass(slots=True)
class _Cached:
    fresh_until: float  # answered from the cache alone until then
    usable_until: float  # then still answered while one refresh runs in the background
    principal: Principal | None


class IntrospectionClient:
    """Asks the accounts service who a key belongs to, and remembers the answer briefly.

    One introspection per key at a time: requests that find no usable answer wait for the one
    already asked. An answer past its ``ttl_s`` is still given for ``stale_s`` more while a single
    refresh runs in the background, so a key in steady use is never waited for. Without that, every
    request that found its key's answer expired asked again. Under a benchmark's full load the accounts
    service (30 % of a CPU, also serving reads) fell seconds behind, requests whose introspection took
    over 3 s were 503s, and its own health checks timed out, so HAProxy took it out: 1,255 503s in the
    2-, 3- and 4-instance points; with this, 1 and 12 in two runs alternated with two more without it
    (1,172 there; thirteenth session, `loadtest/README.md`).

    Keys are asked together: those asked while ``max_in_flight`` requests are out go in the next one
    (up to ``max_batch`` keys each), and background refreshes wait up to ``refresh_delay_s`` for company.
    A burst of keys new to the cache sent one request each before, all at once: httpx's pool scanned
    its connections for every request, and 200 keys cost the caller 10.9 ms of CPU each and 2.4 s until
    the last answer on an idle machine; batched, 0.08 ms and 26 ms (``loadtest/bench_introspection.py``,
    fifteenth session). In a service held to 30 % of a CPU the first was seconds of stall, and 503s.

    A revoked key is therefore refused at most ``ttl_s + stale_s`` (and a refresh's delay) after its
    revocation (a refresh that fails keeps the old answer no longer than that); an unknown key's refusal
    is never given stale.

    A request whose key has no usable answer waits for it up to ``timeout_s``, then is a 503. Under a
    saturated machine the accounts service answered in up to 5-10 s (eighteenth session), so the former
    3 s made 503s of requests the platform would have served.
    """

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 2.0,
        stale_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_batch: int = 200,
        max_in_flight: int = 4,
        refresh_delay_s: float = 0.05,
        timeout_s: float = 10.0,
    ):
        # uvicorn closes a connection idle for 5 s (its keep-alive timeout), httpx by default keeps one
        # for 5 s too: a request sent on a connection the server is closing at that moment fails.
        # Dropping idle connections well before the server does removes that race.
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
        )
        self._admin_token = admin_token
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._stale_s = stale_s
        self._clock = clock
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._refresh_delay_s = refresh_delay_s
        self._cache: dict[str, _Cached] = {}
        self._asking: dict[str, asyncio.Future[Principal | None]] = {}  # by digest, until answered
        self._queued: dict[str, str] = {}  # digest -> key, asked but not sent yet
        self._in_flight: set[asyncio.Task[None]] = set()
        self._send_pending: asyncio.Handle | None = None
        self._max_entries = 100_000

    async def resolve(self, token: str) -> Principal | None:
        if is_admin_token(token, self._admin_token):
            return Principal("admin")
        digest = hash_api_key(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            if now < cached.fresh_until:
                return cached.principal
            if now < cached.usable_until:
                self._ask(digest, token, waited=False)  # this request goes on with the answer it has
                return cached.principal
        # Shielded: a request that goes away (its client hung up) must not cancel the others' answer.
        try:
            return await asyncio.shield(self._ask(digest, token, waited=True))
        except ProblemError:
            KEYS_UNCHECKED.inc()
            raise

    def _ask(self, digest: str, token: str, *, waited: bool) -> asyncio.Future[Principal | None]:
        """The introspection of this key under way, queued if there is none."""
        future = self._asking.get(digest)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._asking[digest] = future
            self._queued[digest] = token
        if digest in self._queued:
            self._schedule_send(0.0 if waited else self._refresh_delay_s)
        return future

    def _schedule_send(self, delay_s: float) -> None:
        """Send what is queued after ``delay_s`` (at the next turn of the loop for 0), unless a send
        comes sooner already; keys asked meanwhile go along."""
        loop = asyncio.get_running_loop()
        pending = self._send_pending
        if pending is not None:
            due = pending.when() if isinstance(pending, asyncio.TimerHandle) else loop.time()
            if due <= loop.time() + delay_s:
                return
            pending.cancel()
        if delay_s <= 0:
            self._send_pending = loop.call_soon(self._send_queued)
        else:
            self._send_pending = loop.call_later(delay_s, self._send_queued)

    def _send_queued(self) -> None:
        self._send_pending = None
        while self._queued and len(self._in_flight) < self._max_in_flight:
            batch = dict(itertools.islice(self._queued.items(), self._max_batch))
            for digest in batch:
                del self._queued[digest]
            task = asyncio.ensure_future(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._queued and self._send_pending is None:
            self._send_queued()  # what queued up while every slot was taken

    async def _send(self, batch: dict[str, str]) -> None:
        started = time.monotonic()
        try:
            principals = [_principal(answer) for answer in await self._introspect(list(batch.values()))]
        except Exception as exc:
            outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "failed"
            KEY_INTROSPECTION_DURATION.labels(outcome).observe(time.monotonic() - started)
            # The accounts service is down, restarting or answered nonsense: the platform's fault, and
            # a retry helps. Every key of the batch gets that answer; none is left waiting.
            log.warning("introspection of %d keys failed: %r", len(batch), exc)
            for digest in batch:
                self._answer(digest, error=_unavailable(exc))
            return
        KEY_INTROSPECTION_DURATION.labels("answered").observe(time.monotonic() - started)
        now = self._clock()
        if len(self._cache) + len(batch) > self._max_entries:
            self._cache.clear()
        for digest, principal in zip(batch, principals, strict=True):
            fresh_until = now + (self._ttl_s if principal else self._negative_ttl_s)
            self._cache[digest] = _Cached(fresh_until, fresh_until + (self._stale_s if principal else 0.0), principal)
            self._answer(digest, principal=principal)

    def _answer(self, digest: str, principal: Principal | None = None, error: BaseException | None = None) -> None:
        future = self._asking.pop(digest, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(principal)

    async def _introspect(self, tokens: list[str]) -> list[dict[str, Any]]:
        """One POST, sent again once if the connection failed before an answer came (a reused
        connection the server had just closed): introspection reads and changes nothing."""
        for attempt in range(2):
            try:
                response = await self._client.post(
                    "/internal/introspect",
                    json={"tokens": tokens},
                    headers={"Authorization": f"Bearer {self._admin_token}"},
                )
            except _CONNECTION_LOST:
                if attempt:
                    raise
                continue
            response.raise_for_status()
            answers = response.json()["answers"]
            if len(answers) != len(tokens):
                raise ValueError(f"{len(answers)} answers to {len(tokens)} keys")
            return answers
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._send_pending is not None:
            self._send_pending.cancel()
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for future in self._asking.values():
            future.cancel()
        self._asking.clear()
        self._queued.clear()
        await self._client.aclose()


def _principal(answer: dict[str, Any]) -> Principal | None:
    if not answer.get("active"):
        return None
    if answer["kind"] == "admin":  # the accounts service's admin key: it has no subject
        return Principal("admin")
    return Principal(answer["kind"], UUID(answer["sub"]))


def _unavailable(cause: BaseException) -> ProblemError:
    error = ProblemError(
        503, "service-unavailable", "keys cannot be checked right now; retry shortly", headers={"Retry-After": "1"}
    )
    error.__cause__ = cause
    return error


def _retrieve(future: asyncio.Future[Principal | None]) -> None:
    """A background refresh's failure is seen by whoever waits for the next one, not logged as lost."""
    if not future.cancelled():
        future.exception()


def _resolver(request: Request) -> KeyResolver:
    return request.app.state.key_resolver


async def optional_principal(request: Request) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    principal = await _resolver(request).resolve(token)
    if principal is None:
        raise UNAUTHORIZED
    return principal


async def require_principal(request: Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise UNAUTHORIZED
    principal = await _resolver(request).resolve(token)
    if principal is None:
        raise UNAUTHORIZED
    return principal


def require_kind(*kinds: PrincipalKind):
    async def dependency(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
        if principal.kind not in kinds:
            raise ProblemError(403, "forbidden", f"this operation needs a {' or '.join(kinds)} key")
        return principal

    return dependency


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_kind("admin"))]
MerchantPrincipal = Annotated[Principal, Depends(require_kind("merchant"))]
CustomerPrincipal = Annotated[Principal, Depends(require_kind("customer"))]
MerchantOrAdmin = Annotated[Principal, Depends(require_kind("merchant", "admin"))]
CustomerOrAdmin = Annotated[Principal, Depends(require_kind("customer", "admin"))]
