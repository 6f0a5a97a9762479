"""Queue recovery: a pure plan from what the broker looks like, and an executor at the edge.

``plan_recovery`` decides; ``execute`` does (management API, outbox flush, consumer restart) and
reports. The kopf daemon and the local runtime call both with their own edges, so recovery behaves
the same on a cluster and on one machine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from newbank.messaging.topology import TOPOLOGY, QueueSpec, Topology
from newbank_operator.rabbitmq import BrokerObservation, ManagementClient, declare_topology, missing_topology

log = logging.getLogger("newbank_operator.recovery")

REDRIVES_HEADER = "x-newbank-redrives"
# Set by newbank.messaging.consumer on dead-lettering: the class of the error comes first.
ERROR_HEADER = "x-newbank-error"
CONSUMER_RETRIES_HEADER = "x-newbank-retries"
# Errors that will fail again whatever happens; re-driving them only burns the budget.
PERMANENT_ERRORS = ("MalformedEvent", "PermanentEventError")
_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True)
class RecoveryPolicy:
    enabled: bool = True
    zero_consumer_grace_s: float = 60.0
    redrive_dead_letters: bool = True
    max_redrives: int = 3
    flush_outboxes: bool = True
    redrive_batch: int = 500


@dataclass(frozen=True)
class RecoveryMemory:
    """What recovery remembers between rounds (kept by the caller, replaced by each plan)."""

    broker_was_reachable: bool | None = None
    stalled_since: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RedeclareTopology:
    missing: tuple[str, ...]
    kind: str = "redeclare-topology"


@dataclass(frozen=True)
class FlushOutboxes:
    kind: str = "flush-outboxes"


@dataclass(frozen=True)
class RedriveDeadLetters:
    queue: str
    count: int
    kind: str = "redrive-dead-letters"


@dataclass(frozen=True)
class RestartConsumers:
    service: str
    queue: str
    stalled_s: float
    kind: str = "restart-consumers"


Action = RedeclareTopology | FlushOutboxes | RedriveDeadLetters | RestartConsumers


def describe(action: Action) -> str:
    match action:
        case RedeclareTopology(missing=missing):
            return (
                f"re-declared topology (missing: {', '.join(missing[:5]) or 'none'}{'...' if len(missing) > 5 else ''})"
            )
        case FlushOutboxes():
            return "asked the services to flush their outboxes"
        case RedriveDeadLetters(queue=queue):
            return f"re-drove dead-lettered messages of {queue}"
        case RestartConsumers(service=service, queue=queue, stalled_s=stalled_s):
            return f"restarted {service} consumers: {queue} had a backlog and no consumer for {stalled_s:.0f}s"
    return str(action)


def plan_recovery(
    observed: BrokerObservation,
    policy: RecoveryPolicy,
    now: float,
    memory: RecoveryMemory,
    topology: Topology = TOPOLOGY,
) -> tuple[list[Action], RecoveryMemory]:
    """Decide what to recover this round; returns the actions and the memory for the next round."""
    if not observed.reachable:
        return [], replace(memory, broker_was_reachable=False)
    actions: list[Action] = []
    back_after_outage = memory.broker_was_reachable is False
    missing = missing_topology(observed, topology)
    if policy.enabled and (missing or back_after_outage):
        actions.append(RedeclareTopology(missing=tuple(missing)))
        if policy.flush_outboxes:
            actions.append(FlushOutboxes())
        if policy.redrive_dead_letters:
            # Every DLQ: the management statistics lag (and restart at zero with the node), so an
            # empty-looking DLQ may hold messages; the executor counts with basic.get instead.
            actions += [RedriveDeadLetters(spec.name, policy.redrive_batch) for spec in topology.queues]

    stalled_since: dict[str, float] = {}
    for spec in topology.queues:
        stats = observed.queues.get(spec.name)
        if stats is None or stats.ready == 0 or stats.consumers > 0:
            continue
        since = memory.stalled_since.get(spec.name, now)
        stalled_since[spec.name] = since
        if policy.enabled and now - since >= policy.zero_consumer_grace_s:
            actions.append(RestartConsumers(spec.consumer_service, spec.name, stalled_s=now - since))
            stalled_since[spec.name] = now  # give the restarted consumers a full grace period
    return actions, RecoveryMemory(broker_was_reachable=True, stalled_since=stalled_since)


@dataclass(frozen=True)
class RedriveVerdict:
    """Where one dead-lettered message goes: back to ``exchange`` with ``routing_key``, or parked."""

    redrive: bool
    routing_key: str = ""
    headers: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def redrive_verdict(
    headers: dict[str, Any] | None,
    message_type: str | None,
    spec: QueueSpec,
    max_redrives: int,
    topology: Topology = TOPOLOGY,
) -> RedriveVerdict:
    """Decide if a dead-lettered message is retried, and with which routing key and headers.

    The original routing key comes from the oldest ``x-death`` entry made at the events exchange
    (broker dead-lettering), else from the event type when it is one of the queue's keys (the
    consumer's own dead-lettering keeps ``type`` = routing key). ``x-newbank-redrives`` caps retries.
    """
    headers = dict(headers or {})
    redrives = int(headers.get(REDRIVES_HEADER, 0) or 0)
    if redrives >= max_redrives:
        return RedriveVerdict(False, reason=f"re-driven {redrives} times already")
    error = str(headers.get(ERROR_HEADER, ""))
    if error.startswith(PERMANENT_ERRORS):
        return RedriveVerdict(False, reason=f"permanent error: {error[:80]}")
    routing_key = ""
    for death in reversed(headers.get("x-death") or []):
        keys = death.get("routing-keys") or []
        if death.get("exchange") == topology.exchange and keys:
            routing_key = keys[0]
            break
    if not routing_key and message_type in spec.routing_keys:
        routing_key = message_type or ""
    if not routing_key:
        return RedriveVerdict(False, reason="original routing key unknown")
    for name in _DEATH_HEADERS:
        headers.pop(name, None)
    headers[REDRIVES_HEADER] = redrives + 1
    headers[CONSUMER_RETRIES_HEADER] = 0
    return RedriveVerdict(True, routing_key=routing_key, headers=headers)


@dataclass(frozen=True)
class RedriveResult:
    redriven: int = 0
    parked: int = 0


async def redrive_dead_letters(
    client: ManagementClient,
    spec: QueueSpec,
    max_redrives: int,
    count: int,
    topology: Topology = TOPOLOGY,
) -> RedriveResult:
    """Move up to ``count`` messages from ``<queue>.dlq`` back to the events exchange.

    Messages that may not be retried go back to the tail of the DLQ; each message is taken once per
    pass because the pass stops at the depth the first ``get`` reported (its ``message_count`` is
    the broker's own count, unlike the lagging statistics). A failed publish also puts it back.
    """
    redriven = parked = 0
    first = await client.take_messages(spec.dead_letter_queue, 1)
    if not first:
        return RedriveResult()
    depth = min(count, int(first[0].get("message_count", 0)) + 1)
    messages = list(first)
    while len(messages) < depth:
        chunk = await client.take_messages(spec.dead_letter_queue, min(100, depth - len(messages)))
        if not chunk:
            break
        messages += chunk
    for message in messages:
        properties = dict(message.get("properties") or {})
        verdict = redrive_verdict(properties.get("headers"), properties.get("type"), spec, max_redrives, topology)
        if verdict.redrive:
            properties["headers"] = verdict.headers
            if await client.publish(topology.exchange, verdict.routing_key, message["payload"], properties):
                redriven += 1
                continue
        await client.publish("", spec.dead_letter_queue, message["payload"], properties)
        parked += 1
    return RedriveResult(redriven=redriven, parked=parked)


@dataclass(frozen=True)
class ActionOutcome:
    action: Action
    ok: bool
    detail: str


@dataclass
class RecoveryEdges:
    """The I/O recovery acts through; the cluster and the local runtime each give their own."""

    client: ManagementClient
    flush_outboxes: Callable[[], Awaitable[str]]
    restart_consumers: Callable[[str], Awaitable[str]] | None = None
    topology: Topology = TOPOLOGY


async def execute(actions: list[Action], edges: RecoveryEdges, policy: RecoveryPolicy) -> list[ActionOutcome]:
    """Run the planned actions in order; one failing action does not stop the others."""
    outcomes: list[ActionOutcome] = []
    for action in actions:
        try:
            detail = await _run(action, edges, policy)
            outcomes.append(ActionOutcome(action, True, detail))
        except Exception as exc:  # report every failure in status/Events, keep going
            log.warning("recovery action %s failed: %r", action.kind, exc)
            outcomes.append(ActionOutcome(action, False, f"{describe(action)} failed: {exc!r}"[:500]))
    return outcomes


async def _run(action: Action, edges: RecoveryEdges, policy: RecoveryPolicy) -> str:
    match action:
        case RedeclareTopology():
            declared = await declare_topology(edges.client, edges.topology)
            return f"{describe(action)}; {len(declared)} exchanges/queues declared"
        case FlushOutboxes():
            return f"{describe(action)}: {await edges.flush_outboxes()}"
        case RedriveDeadLetters(queue=queue, count=count):
            spec = edges.topology.queue(queue)
            result = await redrive_dead_letters(edges.client, spec, policy.max_redrives, count, edges.topology)
            if not result.redriven and not result.parked:
                return f"no dead-lettered messages in {queue}.dlq"
            return f"re-drove {result.redriven} dead-lettered messages of {queue}, {result.parked} kept in DLQ"
        case RestartConsumers(service=service):
            if edges.restart_consumers is None:
                return f"{describe(action)}: no way to restart here, skipped"
            return f"{describe(action)}: {await edges.restart_consumers(service)}"
    raise ValueError(f"unknown action {action!r}")
