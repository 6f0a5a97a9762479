"""The one way a NewBank service is assembled.

Every service gets the same lifespan (migrations, database pools, the broker connection with the
topology, the outbox relay, its consumers) and the same endpoints (``/healthz``, ``/readyz``,
``/metrics``, ``/internal/outbox/flush``), problem+json errors and the 64 KiB body limit, so a reader
who knows one service knows them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from newbank.auth import IntrospectionClient, KeyResolver, is_admin_token
from newbank.database import Database, migrate
from newbank.errors import ProblemError, install_error_handlers
from newbank.gc_tuning import tune_after_startup
from newbank.messaging.broker import Broker
from newbank.messaging.consumer import ConsumerSpec, InboxConsumer
from newbank.messaging.inbox_pruning import inbox_pruning_loop
from newbank.messaging.outbox import OutboxRelay
from newbank.observability import (
    BodySizeLimitMiddleware,
    MetricsMiddleware,
    configure_logging,
    metrics_response,
)
from newbank.settings import Settings, get_settings

log = logging.getLogger("newbank.service")


@dataclass
class ServiceContext:
    """What a running service holds; routers reach it through the ``Context`` dependency."""

    settings: Settings
    db: Database
    broker: Broker
    relay: OutboxRelay
    key_resolver: KeyResolver
    extras: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]


Hook = Callable[[ServiceContext], Awaitable[None]]


@dataclass
class ServiceSpec:
    name: Literal["accounts", "transactions", "partners", "cashback"]
    database: Literal["bank", "cashback"]
    title: str
    routers: Sequence[APIRouter]
    consumers: Sequence[ConsumerSpec] = ()
    # The accounts service resolves keys from its own tables; the others introspect.
    key_resolver: Callable[[Settings, Database], KeyResolver] | None = None
    on_startup: Sequence[Hook] = ()
    on_shutdown: Sequence[Hook] = ()
    # ASGI layers inside the body-size limit and the metrics, outside the routing: a hot path that
    # answers its requests without FastAPI's per-request work (``payment_fast_path``).
    fast_paths: Sequence[tuple[type[Any], dict[str, Any]]] = ()


async def get_context(request: Request) -> ServiceContext:
    # async: a plain `def` dependency would run in the thread pool, a thread hand-off on every request.
    return request.app.state.ctx


Context = Annotated[ServiceContext, Depends(get_context)]


async def _connect_database(settings: Settings, database: str) -> Database:
    """Wait for the database (it may be starting or failing over), migrate, then open the pools."""
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        try:
            if settings.migrate_on_start:
                await migrate(settings.database_url, database)
            return await Database.connect(
                settings.database_url,
                settings.database_replica_url,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                command_timeout=settings.db_command_timeout_s,
                application_name=f"newbank-{settings.instance_id}",
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database not reachable yet: %r", exc)
            await asyncio.sleep(1.0)
        except Exception as exc:
            import asyncpg

            if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError) and (
                asyncio.get_running_loop().time() < deadline
            ):
                log.warning("database not ready yet: %r", exc)
                await asyncio.sleep(1.0)
                continue
            raise


def _operations_router(spec: ServiceSpec) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": spec.name}

    @router.get("/readyz")
    async def readyz(ctx: Context) -> JSONResponse:
        database = await ctx.db.ping()
        broker = ctx.broker.available
        ready = database and broker
        return JSONResponse(
            {"ready": ready, "database": database, "broker": broker, "service": spec.name},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return metrics_response()

    @router.post("/internal/outbox/flush")
    async def flush_outbox(ctx: Context, request: Request) -> dict[str, int]:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if not is_admin_token(token, ctx.settings.admin_token):
            raise ProblemError(401, "unauthorized", "the admin key is required")
        return {"published": await ctx.relay.flush()}

    return router


def _telemetry(enabled: bool) -> dict[str, bool]:
    """FastAPI's native OpenTelemetry switches (an unknown keyword to a FastAPI that has none)."""
    return {"tracing": enabled, "metrics": enabled, "logs": enabled}


def create_service_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.instance_id, settings.log_level)
        db = await _connect_database(settings, spec.database)
        broker = Broker(settings.amqp_url, marker=spec.database)
        relay = OutboxRelay(
            db,
            broker,
            poll_interval_s=settings.outbox_poll_interval_s,
            batch_size=settings.outbox_batch_size,
            coalesce_s=settings.outbox_coalesce_ms / 1000,
        )
        # A broker back without its data lost what it held: re-drive what was published from
        # redrive_margin_s before it went away (longer than consumers lag) until now.
        broker.on_data_lost(lambda lost_at: relay.republish(lost_at - settings.redrive_margin_s))
        resolver = (
            spec.key_resolver(settings, db)
            if spec.key_resolver
            else IntrospectionClient(
                settings.accounts_internal_url,
                settings.admin_token,
                ttl_s=settings.introspection_cache_s,
                stale_s=settings.introspection_stale_s,
                timeout_s=settings.introspection_timeout_s,
            )
        )
        ctx = ServiceContext(settings=settings, db=db, broker=broker, relay=relay, key_resolver=resolver)
        app.state.ctx = ctx
        app.state.key_resolver = resolver
        consumer_names = [f"{spec.name}:{consumer_spec.queue.name}" for consumer_spec in spec.consumers]
        for consumer_name, consumer_spec in zip(consumer_names, spec.consumers, strict=True):
            if consumer_spec.after_commit is None:
                consumer_spec.after_commit = relay.wake
            consumer = InboxConsumer(
                consumer_spec,
                db,
                broker,
                consumer_name=consumer_name,
                prefetch=settings.consumer_prefetch,
                batch_size=settings.consumer_batch_size,
                max_retries=settings.consumer_max_retries,
                retry_base_delay_ms=settings.consumer_retry_base_delay_ms,
            )
            broker.on_connected(consumer.start)
        for hook in spec.on_startup:
            await hook(ctx)
        ctx.spawn(broker.run(), "broker")
        ctx.spawn(relay.run(), "outbox-relay")
        ctx.spawn(relay.housekeeping(), "outbox-housekeeping")
        if consumer_names:
            ctx.spawn(inbox_pruning_loop(db, consumer_names, settings.inbox_retention_h), "inbox-housekeeping")
        tune_after_startup(freeze=settings.gc_freeze, gen0_threshold=settings.gc_gen0_threshold)
        log.info("service started")
        try:
            yield
        finally:
            relay.stop()
            for hook in spec.on_shutdown:
                await hook(ctx)
            await broker.close()
            for task in ctx.tasks:
                task.cancel()
            await asyncio.gather(*ctx.tasks, return_exceptions=True)
            if isinstance(resolver, IntrospectionClient):
                await resolver.aclose()
            await db.close()

    app = FastAPI(
        title=spec.title,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        telemetry=_telemetry(settings.opentelemetry),
    )
    install_error_handlers(app)
    app.include_router(_operations_router(spec))
    for router in spec.routers:
        app.include_router(router)
    for layer, options in spec.fast_paths if settings.fast_paths else ():
        app.add_middleware(layer, **options)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, service=spec.name)
    return app
