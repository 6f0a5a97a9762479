"""What the cashback and partners integration tests share: the migrated cashback database, the
services running in-process against the session's real PostgreSQL and RabbitMQ, a bus to publish the
bank's events as the bank does (envelope, persistent, message_id = event id), and a small stand-in of
the accounts service's introspection endpoint (the accounts service is the bank's; its contract is
``POST /internal/introspect`` ``{tokens}`` → ``{answers: [{active, kind, sub}, ...]}``).

Imported by ``tests/integration/cashback/conftest.py`` and ``tests/integration/partners/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import asyncpg
import httpx
import orjson
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request

from newbank.database import migrate
from newbank.messaging.topology import EVENTS_EXCHANGE
from newbank.runtime import PgCluster, RabbitMQ
from newbank.settings import Settings

ADMIN_TOKEN = "test-admin-" + secrets.token_urlsafe(12)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now_rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- introspection stand-in
@dataclass
class Keys:
    """API keys of test customers and merchants, answered by the introspection stand-in."""

    url: str = ""
    principals: dict[str, tuple[str, uuid.UUID]] = field(default_factory=dict)

    def new(self, kind: str, subject: uuid.UUID | None = None) -> tuple[str, uuid.UUID]:
        subject = subject or uuid.uuid4()
        token = f"nb{kind[0]}_" + secrets.token_urlsafe(18)
        self.principals[token] = (kind, subject)
        return token, subject

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/internal/introspect")
        async def introspect(request: Request) -> dict[str, Any]:
            assert request.headers.get("authorization") == f"Bearer {ADMIN_TOKEN}"
            answers = []
            for token in (await request.json())["tokens"]:
                found = self.principals.get(token)
                answers.append(
                    {"active": False} if found is None else {"active": True, "kind": found[0], "sub": str(found[1])}
                )
            return {"answers": answers}

        return app


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_TOKEN)


# --------------------------------------------------------------------------- the event bus
class Bus:
    """Publishes events the way the bank's outbox relay does, and listens to what ours emit."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self.connection = connection
        self.channel: aio_pika.abc.AbstractChannel | None = None

    async def _channel(self) -> aio_pika.abc.AbstractChannel:
        if self.channel is None or self.channel.is_closed:
            self.channel = await self.connection.channel(publisher_confirms=True)
            await self.channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        return self.channel

    async def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        event_id: uuid.UUID | None = None,
        version: int = 1,
        source: str = "test-bank",
        raw: bytes | None = None,
    ) -> uuid.UUID:
        event_id = event_id or uuid.uuid4()
        envelope = {
            "id": str(event_id),
            "type": event_type,
            "version": version,
            "source": source,
            "occurred_at": now_rfc3339(),
            "data": data,
        }
        channel = await self._channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                raw if raw is not None else orjson.dumps(envelope),
                message_id=str(event_id),
                type=event_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event_type,
        )
        return event_id

    async def listen(self, routing_key: str) -> asyncio.Queue[dict[str, Any]]:
        """A private queue bound to ``routing_key``: the envelopes our services publish."""
        channel = await self.connection.channel()
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, routing_key)
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await received.put(orjson.loads(message.body))

        await queue.consume(on_message, no_ack=True)
        return received


# --------------------------------------------------------------------------- services in-process
def service_settings(service: str, env: Env, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "service": service,
        "instance_id": f"{service}-test-{secrets.token_hex(3)}",
        "database_url": env.dsn,
        "amqp_url": env.amqp_url,
        "admin_token": ADMIN_TOKEN,
        "accounts_internal_url": env.keys.url,
        "db_pool_min": 1,
        "db_pool_max": 4,
        "consumer_max_retries": 2,
        "consumer_retry_base_delay_ms": 100,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (migrations, pools, broker, relay, consumers) and talk to it over ASGI."""
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ctx.broker.connected.wait(), timeout=30)
        # An unexpected error answers 503/500 as over HTTP, instead of raising into the test.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 10.0, every_s: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail with its last answer after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"not reached within {timeout_s} s; last answer {last!r}")


# --------------------------------------------------------------------------- session fixtures
@dataclass
class Env:
    dsn: str
    amqp_url: str
    keys: Keys
    bus: Bus
    pool: asyncpg.Pool
    rabbitmq: RabbitMQ
    pg: PgCluster


@pytest_asyncio.fixture(scope="session")
async def cashback_env(pg_cluster: PgCluster, rabbitmq: RabbitMQ) -> AsyncIterator[Env]:
    dsn = pg_cluster.multi_host_dsn("cashback")
    await migrate(dsn, "cashback")
    keys = Keys()
    port = free_port()
    keys.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(keys.app(), host="127.0.0.1", port=port, log_level="warning"))
    server_task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    connection = await aio_pika.connect_robust(rabbitmq.amqp_url)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        yield Env(dsn, rabbitmq.amqp_url, keys, Bus(connection), pool, rabbitmq, pg_cluster)
    finally:
        await pool.close()
        await connection.close()
        server.should_exit = True
        await server_task


@pytest.fixture
def env(cashback_env: Env) -> Env:
    return cashback_env
