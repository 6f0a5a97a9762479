"""The CashbackPlatform's status, built from one round's observations (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from newbank.messaging.topology import TOPOLOGY
from newbank_operator.constants import BROKER_AVAILABLE, QUEUES_HEALTHY, SCALING_ACTIVE
from newbank_operator.metrics import ObservedMetrics
from newbank_operator.rabbitmq import BrokerObservation, missing_topology
from newbank_operator.scaling import Decision
from newbank_operator.spec import WatchedQueue


def condition(
    kind: str, ok: bool | None, reason: str, message: str, previous: Sequence[dict[str, Any]], now: str
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status changes."""
    status = "Unknown" if ok is None else "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now
    return {"type": kind, "status": status, "reason": reason, "message": message[:1000], "lastTransitionTime": since}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def build_status(
    *,
    decision: Decision | None,
    scaling_enabled: bool,
    metrics: ObservedMetrics | None,
    broker: BrokerObservation | None,
    queues: Sequence[WatchedQueue],
    previous: dict[str, Any],
    now: str,
    last_action: str,
    last_recovery: dict[str, Any],
    last_scale_time: str,
    generation: int | None = None,
) -> dict[str, Any]:
    previous_conditions = previous.get("conditions") or []
    status: dict[str, Any] = {"lastAction": last_action or previous.get("lastAction", "")}
    if generation is not None:
        status["observedGeneration"] = generation

    if broker is None:
        status["broker"] = "Unknown"
        broker_ok: bool | None = None
        broker_message = "broker not observed yet"
    else:
        status["broker"] = "Available" if broker.reachable else "Unavailable"
        broker_ok = broker.reachable
        broker_message = "management API answers" if broker.reachable else broker.error
    conditions = [condition(BROKER_AVAILABLE, broker_ok, status["broker"], broker_message, previous_conditions, now)]

    if broker is not None and broker.reachable:
        watched = [broker.queues.get(q.name) for q in queues]
        items = [
            {
                "name": q.name,
                "ready": s.ready,
                "unacked": s.unacked,
                "consumers": s.consumers,
                "publishRate": round(s.publish_rate, 2),
                "deliverRate": round(s.deliver_rate, 2),
            }
            for q, s in zip(queues, watched, strict=True)
            if s is not None
        ]
        dead = sum(
            broker.queues[s.dead_letter_queue].ready for s in TOPOLOGY.queues if s.dead_letter_queue in broker.queues
        )
        status["queues"] = {
            "backlog": sum(i["ready"] + i["unacked"] for i in items),
            "deadLettered": dead,
            "items": items,
        }
        missing = missing_topology(broker)
        stalled = [i["name"] for i in items if i["ready"] > 0 and i["consumers"] == 0]
        problems = ([f"missing: {', '.join(missing[:5])}"] if missing else []) + (
            [f"backlog without consumers: {', '.join(stalled)}"] if stalled else []
        )
        conditions.append(
            condition(
                QUEUES_HEALTHY,
                not problems,
                "Missing" if missing else "NoConsumers" if stalled else "Healthy",
                "; ".join(problems) or "topology complete, consumers attached",
                previous_conditions,
                now,
            )
        )
    else:
        conditions.append(
            condition(QUEUES_HEALTHY, None, "BrokerUnavailable", "queues not observable", previous_conditions, now)
        )

    if decision is not None:
        status["replicas"] = {"current": decision.current, "desired": decision.desired, "reason": decision.reason}
        if last_scale_time:
            status["replicas"]["lastScaleTime"] = last_scale_time
    if metrics is not None:
        status["metrics"] = {
            key: value
            for key, value in {
                "instances": metrics.instances,
                "requestsPerSecond": _round(metrics.rps_total),
                "requestsPerSecondPerReplica": _round(metrics.rps_per_replica),
                "inFlightPerReplica": _round(metrics.in_flight_per_replica),
                "p95LatencyMs": _round(metrics.p95_ms, 1),
                "outboxPending": metrics.outbox_pending,
            }.items()
            if value is not None
        }
    active = scaling_enabled and decision is not None and bool(decision.proposals)
    reason = "Disabled" if not scaling_enabled else "MetricsAvailable" if active else "MetricsMissing"
    message = decision.reason if decision is not None else "no decision yet"
    conditions.append(condition(SCALING_ACTIVE, active, reason, message, previous_conditions, now))
    status["conditions"] = conditions
    if last_recovery:
        status["lastRecovery"] = last_recovery
    return status
