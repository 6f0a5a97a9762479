"""One round for one CashbackPlatform on Kubernetes: observe, decide (pure), act, report.

Idempotent: each round starts from what the cluster and the broker say now; acting twice sets the
same scale and re-declares the same topology. Events and the status say what was done and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from newbank.messaging.topology import TOPOLOGY
from newbank_operator.constants import (
    REASON_BROKER_DOWN,
    REASON_BROKER_UP,
    REASON_RECOVERED,
    REASON_RECOVERY_FAILED,
    REASON_SCALED,
)
from newbank_operator.control import ControlState, queue_reading, transaction_readings
from newbank_operator.kube import KubeApi, KubeError
from newbank_operator.metrics import ObservedMetrics, scrape
from newbank_operator.rabbitmq import BrokerObservation, ManagementClient
from newbank_operator.recovery import RecoveryEdges, describe, execute, plan_recovery
from newbank_operator.scaling import Decision, MetricReading, ScalingPolicy, decide
from newbank_operator.spec import PlatformSpec
from newbank_operator.status import build_status

log = logging.getLogger("newbank_operator.reconcile")

# (event type "Normal"/"Warning", reason, message)
EmitEvent = Callable[[str, str, str], None]


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def post_flush(http: httpx.AsyncClient, urls: list[str]) -> str:
    """Ask every instance to publish its pending outbox now; says how many answered."""
    answered = 0
    for url in urls:
        try:
            response = await http.post(url.rstrip("/") + "/internal/outbox/flush")
            answered += response.is_success
        except httpx.HTTPError as exc:
            log.info("outbox flush of %s failed: %r", url, exc)
    return f"{answered}/{len(urls)} instances flushed"


async def _broker_client(kube: KubeApi, namespace: str, spec: PlatformSpec) -> ManagementClient:
    secret = await kube.read_secret(namespace, spec.rabbitmq.secret_name)
    return ManagementClient(
        spec.rabbitmq.management_url,
        secret.get(spec.rabbitmq.username_key, ""),
        secret.get(spec.rabbitmq.password_key, ""),
        spec.rabbitmq.vhost,
    )


async def _recover(
    kube: KubeApi,
    http: httpx.AsyncClient,
    namespace: str,
    spec: PlatformSpec,
    state: ControlState,
    emit: EmitEvent,
    now: float,
) -> BrokerObservation:
    try:
        client = await _broker_client(kube, namespace, spec)
    except KubeError as exc:
        return BrokerObservation(reachable=False, error=f"credentials Secret: {exc}")
    async with client:
        observed = await client.observe()
        was = state.recovery.broker_was_reachable
        if was is not False and not observed.reachable:
            emit("Warning", REASON_BROKER_DOWN, f"RabbitMQ management API unreachable: {observed.error}"[:1000])
        elif was is False and observed.reachable:
            emit("Normal", REASON_BROKER_UP, "RabbitMQ is reachable again")
        actions, state.recovery = plan_recovery(observed, spec.recovery, now, state.recovery, TOPOLOGY)
        if not actions:
            return observed

        async def flush() -> str:
            urls: list[str] = []
            missing: list[str] = []
            for deployment in spec.deployments.values():
                try:
                    urls += await kube.ready_pod_urls(namespace, deployment, spec.service_port)
                except KubeError:  # a service not deployed here has no outbox to flush
                    missing.append(deployment)
            done = await post_flush(http, urls)
            return done + (f" (not found: {', '.join(missing)})" if missing else "")

        async def restart(service: str) -> str:
            deployment = spec.consumer_deployment(service)
            await kube.restart_deployment(namespace, deployment, utc_now())
            return f"rollout restart of {deployment}"

        outcomes = await execute(actions, RecoveryEdges(client, flush, restart, TOPOLOGY), spec.recovery)
        for outcome in outcomes:
            emit(
                "Normal" if outcome.ok else "Warning",
                REASON_RECOVERED if outcome.ok else REASON_RECOVERY_FAILED,
                outcome.detail,
            )
        state.last_action = describe(actions[-1])
        state.last_recovery = {"time": utc_now(), "actions": [o.detail for o in outcomes]}
        return await client.observe() if any(o.ok for o in outcomes) else observed


async def _scale(
    kube: KubeApi,
    namespace: str,
    deployment: str,
    readings: list[MetricReading],
    policy: ScalingPolicy,
    state: ControlState,
    enabled: bool,
    emit: EmitEvent,
    now: float,
) -> Decision:
    current, _ = await kube.get_scale(namespace, deployment)
    decision = decide(readings, current, policy, state.histories.get(deployment, ()), now)
    state.histories[deployment] = decision.history
    if enabled and decision.changes:
        await kube.set_scale(namespace, deployment, decision.desired)
        emit("Normal", REASON_SCALED, f"{deployment}: {decision.reason}")
        state.last_action = f"scaled {deployment} {decision.current}->{decision.desired}"
        state.last_scale_time = utc_now()
    return decision


async def reconcile_platform(
    kube: KubeApi,
    http: httpx.AsyncClient,
    namespace: str,
    spec: PlatformSpec,
    state: ControlState,
    previous_status: dict[str, Any],
    emit: EmitEvent,
    generation: int | None = None,
) -> dict[str, Any]:
    """Run one round and return the status it wrote."""
    now = time.monotonic()
    broker = await _recover(kube, http, namespace, spec, state, emit, now)

    urls = list(spec.metrics_urls) or await kube.ready_pod_urls(namespace, spec.deployment, spec.metrics_port)
    metrics: ObservedMetrics = state.window.observe(await scrape(http, urls, now, spec.metrics_path))
    decision: Decision | None = None
    try:
        decision = await _scale(
            kube,
            namespace,
            spec.deployment,
            transaction_readings(metrics, spec.targets),
            spec.scaling,
            state,
            spec.scaling_enabled,
            emit,
            now,
        )
    except KubeError as exc:
        log.warning("scaling %s failed: %s", spec.deployment, exc)
    for queue in spec.queues:
        if not queue.consumer_deployment:
            continue
        policy = ScalingPolicy(
            min_replicas=queue.min_replicas,
            max_replicas=queue.max_replicas,
            tolerance=spec.scaling.tolerance,
            scale_up=spec.scaling.scale_up,
            scale_down=spec.scaling.scale_down,
        )
        reading = queue_reading(queue, broker.queues.get(queue.name) if broker.reachable else None)
        try:
            await _scale(
                kube, namespace, queue.consumer_deployment, [reading], policy, state, spec.scaling_enabled, emit, now
            )
        except KubeError as exc:
            log.warning("scaling %s failed: %s", queue.consumer_deployment, exc)

    status = build_status(
        decision=decision,
        scaling_enabled=spec.scaling_enabled,
        metrics=metrics,
        broker=broker,
        queues=spec.queues,
        previous=previous_status,
        now=utc_now(),
        last_action=state.last_action,
        last_recovery=state.last_recovery,
        last_scale_time=state.last_scale_time,
        generation=generation,
    )
    return status
