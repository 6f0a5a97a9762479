"""The glue both loops share: metrics to readings, and the state one platform keeps between rounds."""

from __future__ import annotations

from dataclasses import dataclass, field

from newbank_operator.metrics import MetricsWindow, ObservedMetrics
from newbank_operator.rabbitmq import QueueStats
from newbank_operator.recovery import RecoveryMemory
from newbank_operator.scaling import MetricReading, Recommendation
from newbank_operator.spec import Targets, WatchedQueue


def transaction_readings(metrics: ObservedMetrics, targets: Targets) -> list[MetricReading]:
    """The transaction service's metrics against their targets; a target of 0 leaves a metric out."""
    candidates = [
        ("requests_per_second", metrics.rps_per_replica, targets.requests_per_second_per_replica),
        ("in_flight", metrics.in_flight_per_replica, targets.in_flight_per_replica),
        ("p95_latency_ms", metrics.p95_ms, targets.p95_latency_ms),
    ]
    return [MetricReading(name, value, target) for name, value, target in candidates if target > 0]


def queue_reading(queue: WatchedQueue, stats: QueueStats | None) -> MetricReading:
    """A queue's backlog as a total over its consumer replicas (the HPA's AverageValue)."""
    return MetricReading(
        f"backlog {queue.name}", stats.backlog if stats else None, queue.backlog_per_replica, total=True
    )


@dataclass
class ControlState:
    """What one platform's loop remembers between rounds (in memory: a restart starts afresh)."""

    window: MetricsWindow = field(default_factory=MetricsWindow)
    histories: dict[str, tuple[Recommendation, ...]] = field(default_factory=dict)
    recovery: RecoveryMemory = field(default_factory=RecoveryMemory)
    last_action: str = ""
    last_recovery: dict[str, object] = field(default_factory=dict)
    last_scale_time: str = ""
