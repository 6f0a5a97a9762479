"""PostgreSQL access: a pool on "whichever node is primary now", an optional replica pool, migrations.

The DSN is a multi-host one with ``target_session_attrs=read-write``, so after a failover new
connections find the new primary by themselves; broken connections are dropped by the pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import asyncpg
import orjson

log = logging.getLogger("newbank.database")

# One advisory lock key per database, so that concurrent instances migrate one at a time.
_MIGRATION_LOCK = 0x6E657762616E6B  # "newbank"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection as it is: the services keep no session state (no LISTEN, no session
    advisory locks, no SET), so asyncpg's default reset query would be a wasted round trip on every
    request (about 9% of a transaction instance's CPU in the profile of issue 6)."""


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, command_timeout: float, application_name: str = ""
) -> asyncpg.Pool:
    # application_name shows in pg_stat_activity which service and instance holds a connection.
    server_settings = {"application_name": application_name[:63]} if application_name else None
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_keep_session,
        max_inactive_connection_lifetime=60.0,
        # The transaction service calls one server-side function per request; statement caching
        # keeps that a single round trip.
        statement_cache_size=256,
        timeout=5.0,
        server_settings=server_settings,
    )


class Database:
    """The primary pool for writes and read-your-writes; the replica pool for lists and reports."""

    def __init__(self, primary: asyncpg.Pool, replica: asyncpg.Pool | None = None) -> None:
        self.primary = primary
        self.replica = replica or primary

    @classmethod
    async def connect(
        cls,
        dsn: str,
        replica_dsn: str = "",
        *,
        min_size: int = 2,
        max_size: int = 10,
        command_timeout: float = 10.0,
        application_name: str = "",
    ) -> Database:
        primary = await create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            application_name=application_name,
        )
        replica = None
        if replica_dsn:
            replica = await create_pool(
                replica_dsn,
                min_size=1,
                max_size=max(2, max_size // 2),
                command_timeout=command_timeout,
                application_name=application_name,
            )
        return cls(primary, replica)

    async def close(self) -> None:
        await self.primary.close()
        if self.replica is not self.primary:
            await self.replica.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.primary.acquire() as conn, conn.transaction():
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.primary.acquire(timeout=2.0) as conn:
                return bool(await conn.fetchval("SELECT NOT pg_is_in_recovery()", timeout=2.0))
        except Exception:
            return False


def migration_files(database: str) -> list[tuple[str, str]]:
    """The versioned SQL files of one database (``bank`` or ``cashback``): the common ones first."""
    root = resources.files("newbank") / "migrations"
    files: list[tuple[str, str]] = []
    for folder in ("common", database):
        entries = sorted((root / folder).iterdir(), key=lambda entry: entry.name)
        files += [(f"{folder}/{e.name}", e.read_text()) for e in entries if e.name.endswith(".sql")]
    return files


async def migrate(dsn: str, database: str) -> list[str]:
    """Apply the SQL files not applied yet, each in its own transaction, under an advisory lock.

    Idempotent: running it again, or from several instances at once, applies nothing twice.
    """
    conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=10.0)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migration")}
            for name, sql in migration_files(database):
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migration (version) VALUES ($1)", name)
                applied_now.append(name)
                log.info("migration applied", extra={"database": database, "version": name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
