"""One Settings object per process, read from the environment (prefix ``NEWBANK_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["accounts", "transactions", "partners", "cashback"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWBANK_", extra="ignore")

    service: ServiceName = "accounts"
    instance_id: str = "local-0"

    # "Whichever node is primary now": a multi-host DSN with target_session_attrs=read-write.
    database_url: str = "postgresql://newbank@127.0.0.1:5432/bank?target_session_attrs=read-write"
    # Lists and reports may read from a standby; empty means "use the primary".
    database_replica_url: str = ""
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    db_command_timeout_s: float = 10.0

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "newbank.events"
    dead_letter_exchange: str = "newbank.dlx"

    admin_token: str = ""
    # The accounts service's internal address (introspection), never routed by the ingress.
    accounts_internal_url: str = "http://127.0.0.1:8101"
    introspection_cache_s: float = 30.0
    # How long past introspection_cache_s a key's answer is still given while it is asked again.
    introspection_stale_s: float = 10.0
    # How long a key's check may wait for the accounts service before the request is a 503. Under a
    # saturated machine its answers took up to 5-10 s (it weighs one process); the ingress lets a
    # request queue 10 s for an instance, so a key's check gets as long.
    introspection_timeout_s: float = Field(default=10.0, gt=0)

    onboarding_rate_limit_per_minute: int = 30
    partners_cache_ttl_s: float = 1.5
    # The relay is woken after every commit that wrote events; the poll is only the safety net.
    outbox_poll_interval_s: float = 0.5
    outbox_coalesce_ms: int = Field(default=10, ge=0, le=1000)
    outbox_batch_size: int = 200
    # After the broker came back without its data: events published from this long before the
    # connection was lost are sent again. It must exceed the consumers' worst lag before the outage.
    redrive_margin_s: float = Field(default=30.0, ge=0)
    # Above the batch size, so that the next batch is already here when one commits (one cashback
    # instance draining a backlog: 500 events/s at 64 against 563 at 256 in the same sitting).
    consumer_prefetch: int = 256
    # Events applied in one transaction at most (those that arrived while the previous one ran).
    consumer_batch_size: int = Field(default=64, ge=1)
    consumer_max_retries: int = 5
    consumer_retry_base_delay_ms: int = 200
    idempotency_retention_h: int = 48
    # Inbox rows (consumers' "already applied") are kept this long (newbank/messaging/inbox_pruning.py).
    inbox_retention_h: float = Field(default=48.0, ge=2.0)

    max_body_bytes: int = 64 * 1024
    # FastAPI's native OpenTelemetry looks the global providers up on every request, configured or
    # not: 2.8 % of a transaction instance's py-spy samples under load. Metrics are Prometheus's (/metrics);
    # true turns FastAPI's spans, metrics and logs on for a process that configures a provider.
    opentelemetry: bool = False
    # A service's hot-path ASGI layers (``ServiceSpec.fast_paths``: the transaction service's payments).
    # false hands every request to FastAPI: the same answers at more CPU per request (a benchmark's
    # side-by-side switch, and a way back should a fast path ever misbehave).
    fast_paths: bool = True
    log_level: str = "INFO"
    # The garbage collector once start-up is over (newbank/gc_tuning.py): start-up's objects frozen,
    # a young collection every this many net container allocations (CPython's default is 700).
    gc_freeze: bool = True
    gc_gen0_threshold: int = Field(default=10_000, ge=100)
    # Run the migrations of this service's database at start-up (idempotent).
    migrate_on_start: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
