"""A CashbackPlatform's spec as typed policy objects (the CRD's defaults, repeated for absent keys).

The API server applies the CRD's defaults; this module applies the same ones again so that a spec
read from anywhere (a test, an older object) means the same. A test checks the two sets agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from newbank_operator.recovery import RecoveryPolicy
from newbank_operator.scaling import Behavior, ScalingPolicy

SERVICES = ("accounts", "transactions", "partners", "cashback")


@dataclass(frozen=True)
class Targets:
    requests_per_second_per_replica: float = 50.0
    in_flight_per_replica: float = 20.0
    p95_latency_ms: float = 0.0


@dataclass(frozen=True)
class WatchedQueue:
    name: str
    consumer_deployment: str = ""
    backlog_per_replica: int = 100
    min_replicas: int = 1
    max_replicas: int = 5


@dataclass(frozen=True)
class RabbitSettings:
    management_url: str = "http://newbank-rabbitmq:15672"
    vhost: str = "/"
    secret_name: str = "newbank-rabbitmq-default-user"
    username_key: str = "username"
    password_key: str = "password"


@dataclass(frozen=True)
class PlatformSpec:
    deployment: str = "newbank-transactions"
    metrics_port: int = 8000
    metrics_path: str = "/metrics"
    metrics_urls: tuple[str, ...] = ()
    scaling_enabled: bool = True
    sync_period_s: float = 15.0
    scaling: ScalingPolicy = field(default_factory=lambda: ScalingPolicy(min_replicas=2, max_replicas=10))
    targets: Targets = Targets()
    queues: tuple[WatchedQueue, ...] = (WatchedQueue("cashback.payment-events", "newbank-cashback"),)
    rabbitmq: RabbitSettings = RabbitSettings()
    recovery: RecoveryPolicy = field(default_factory=lambda: RecoveryPolicy(zero_consumer_grace_s=120))
    service_port: int = 8000
    deployments: dict[str, str] = field(default_factory=lambda: {s: f"newbank-{s}" for s in SERVICES})

    def consumer_deployment(self, service: str) -> str:
        return self.deployments.get(service, f"newbank-{service}")


def _behavior(raw: Mapping[str, Any], default: Behavior) -> Behavior:
    return Behavior(
        stabilization_window_s=float(raw.get("stabilizationWindowSeconds", default.stabilization_window_s)),
        max_step_replicas=int(raw.get("maxStepReplicas", default.max_step_replicas)),
        max_step_percent=float(raw.get("maxStepPercent", default.max_step_percent)),
    )


def parse_spec(spec: Mapping[str, Any] | None) -> PlatformSpec:
    """Typed policy from a CR's ``spec`` (missing keys take the CRD's defaults)."""
    spec = spec or {}
    base = PlatformSpec()
    service = spec.get("transactionService") or {}
    scaling = spec.get("scaling") or {}
    targets = scaling.get("targets") or {}
    rabbit = spec.get("rabbitmq") or {}
    secret = rabbit.get("credentialsSecret") or {}
    recovery = spec.get("recovery") or {}
    min_replicas = int(scaling.get("minReplicas", base.scaling.min_replicas))
    queues = spec.get("queues")
    return PlatformSpec(
        deployment=str(service.get("deployment", base.deployment)),
        metrics_port=int(service.get("metricsPort", base.metrics_port)),
        metrics_path=str(service.get("metricsPath", base.metrics_path)),
        metrics_urls=tuple(service.get("metricsUrls") or ()),
        scaling_enabled=bool(scaling.get("enabled", True)),
        sync_period_s=float(scaling.get("syncPeriodSeconds", base.sync_period_s)),
        scaling=ScalingPolicy(
            min_replicas=min_replicas,
            # A max below min would make every decision contradict itself: min wins.
            max_replicas=max(min_replicas, int(scaling.get("maxReplicas", base.scaling.max_replicas))),
            tolerance=float(scaling.get("tolerance", base.scaling.tolerance)),
            scale_up=_behavior(scaling.get("scaleUp") or {}, base.scaling.scale_up),
            scale_down=_behavior(scaling.get("scaleDown") or {}, base.scaling.scale_down),
        ),
        targets=Targets(
            requests_per_second_per_replica=float(targets.get("requestsPerSecondPerReplica", 50.0)),
            in_flight_per_replica=float(targets.get("inFlightPerReplica", 20.0)),
            p95_latency_ms=float(targets.get("p95LatencyMs", 0.0)),
        ),
        queues=base.queues
        if queues is None
        else tuple(
            WatchedQueue(
                name=str(q["name"]),
                consumer_deployment=str(q.get("consumerDeployment", "")),
                backlog_per_replica=int(q.get("backlogPerReplica", 100)),
                min_replicas=int(q.get("minReplicas", 1)),
                max_replicas=max(int(q.get("minReplicas", 1)), int(q.get("maxReplicas", 5))),
            )
            for q in queues
        ),
        rabbitmq=RabbitSettings(
            management_url=str(rabbit.get("managementUrl", base.rabbitmq.management_url)),
            vhost=str(rabbit.get("vhost", "/")),
            secret_name=str(secret.get("name", base.rabbitmq.secret_name)),
            username_key=str(secret.get("usernameKey", "username")),
            password_key=str(secret.get("passwordKey", "password")),
        ),
        recovery=RecoveryPolicy(
            enabled=bool(recovery.get("enabled", True)),
            zero_consumer_grace_s=float(recovery.get("zeroConsumerGraceSeconds", 120)),
            redrive_dead_letters=bool(recovery.get("redriveDeadLetters", True)),
            max_redrives=int(recovery.get("maxRedrives", 3)),
            flush_outboxes=bool(recovery.get("flushOutboxes", True)),
        ),
        service_port=int(recovery.get("servicePort", 8000)),
        deployments={s: str((recovery.get("deployments") or {}).get(s, f"newbank-{s}")) for s in SERVICES},
    )
