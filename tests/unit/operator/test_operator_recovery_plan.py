"""Table tests of the recovery plan and of the per-message re-drive verdict."""

from __future__ import annotations

from newbank.messaging.topology import CASHBACK_PAYMENTS, TOPOLOGY
from newbank_operator.rabbitmq import BrokerObservation, QueueStats, expected_bindings
from newbank_operator.recovery import (
    FlushOutboxes,
    RecoveryMemory,
    RecoveryPolicy,
    RedeclareTopology,
    RedriveDeadLetters,
    RestartConsumers,
    plan_recovery,
    redrive_verdict,
)

POLICY = RecoveryPolicy(zero_consumer_grace_s=60, max_redrives=3)


def healthy(**overrides: QueueStats) -> BrokerObservation:
    queues = {name: QueueStats(name, consumers=1) for name in TOPOLOGY.all_queue_names()}
    queues.update(overrides)
    return BrokerObservation(
        reachable=True,
        queues=queues,
        exchanges=frozenset({TOPOLOGY.exchange, TOPOLOGY.dead_letter_exchange, ""}),
        bindings=frozenset(expected_bindings()),
    )


def kinds(actions: list) -> list[str]:
    return [action.kind for action in actions]


def test_healthy_broker_needs_nothing() -> None:
    actions, memory = plan_recovery(healthy(), POLICY, 0.0, RecoveryMemory())
    assert actions == [] and memory.broker_was_reachable is True


def test_unreachable_broker_is_remembered_and_recovery_follows_its_return() -> None:
    actions, memory = plan_recovery(BrokerObservation(reachable=False), POLICY, 0.0, RecoveryMemory(True))
    assert actions == [] and memory.broker_was_reachable is False
    dlq = QueueStats(CASHBACK_PAYMENTS.dead_letter_queue, ready=4)
    actions, memory = plan_recovery(healthy(**{dlq.name: dlq}), POLICY, 1.0, memory)
    assert actions == [
        RedeclareTopology(missing=()),
        FlushOutboxes(),
        *[RedriveDeadLetters(spec.name, POLICY.redrive_batch) for spec in TOPOLOGY.queues],
    ]
    assert memory.broker_was_reachable is True


def test_missing_queue_triggers_redeclare() -> None:
    observed = healthy()
    del observed.queues[CASHBACK_PAYMENTS.name]
    actions, _ = plan_recovery(observed, POLICY, 0.0, RecoveryMemory(True))
    assert isinstance(actions[0], RedeclareTopology)
    assert CASHBACK_PAYMENTS.name in actions[0].missing
    assert kinds(actions) == ["redeclare-topology", "flush-outboxes"] + ["redrive-dead-letters"] * len(TOPOLOGY.queues)


def test_recovery_disabled_plans_nothing() -> None:
    policy = RecoveryPolicy(enabled=False)
    observed = healthy()
    del observed.queues[CASHBACK_PAYMENTS.name]
    actions, _ = plan_recovery(observed, policy, 0.0, RecoveryMemory(False))
    assert actions == []


def test_zero_consumers_over_backlog_restarts_after_grace_only() -> None:
    stuck = QueueStats(CASHBACK_PAYMENTS.name, ready=10, consumers=0)
    memory = RecoveryMemory(True)
    timeline = {}
    for t in (0.0, 30.0, 60.0, 90.0, 120.0):
        actions, memory = plan_recovery(healthy(**{stuck.name: stuck}), POLICY, t, memory)
        timeline[t] = kinds(actions)
    assert timeline == {
        0.0: [],
        30.0: [],
        60.0: ["restart-consumers"],
        90.0: [],
        120.0: ["restart-consumers"],
    }


def test_restart_names_the_consumer_service_and_clears_when_consumers_return() -> None:
    stuck = QueueStats(CASHBACK_PAYMENTS.name, ready=10, consumers=0)
    _, memory = plan_recovery(healthy(**{stuck.name: stuck}), POLICY, 0.0, RecoveryMemory(True))
    actions, _ = plan_recovery(healthy(**{stuck.name: stuck}), POLICY, 61.0, memory)
    assert actions == [RestartConsumers("cashback", CASHBACK_PAYMENTS.name, stalled_s=61.0)]
    _, memory = plan_recovery(healthy(), POLICY, 62.0, memory)
    assert memory.stalled_since == {}


def test_empty_queue_without_consumers_is_fine() -> None:
    idle = QueueStats(CASHBACK_PAYMENTS.name, ready=0, consumers=0)
    actions, memory = plan_recovery(healthy(**{idle.name: idle}), POLICY, 1000.0, RecoveryMemory(True))
    assert actions == [] and memory.stalled_since == {}


def death(exchange: str, queue: str, keys: list[str]) -> dict:
    return {"exchange": exchange, "queue": queue, "routing-keys": keys, "reason": "rejected", "count": 1}


def test_verdict_uses_oldest_death_at_events_exchange() -> None:
    headers = {
        "x-death": [
            death("", CASHBACK_PAYMENTS.name, [CASHBACK_PAYMENTS.name]),
            death("newbank.events", CASHBACK_PAYMENTS.name, ["payment.refunded"]),
        ],
        "x-first-death-exchange": "newbank.events",
        "x-newbank-retries": 5,
        "trace": "kept",
    }
    verdict = redrive_verdict(headers, None, CASHBACK_PAYMENTS, max_redrives=3)
    assert verdict.redrive and verdict.routing_key == "payment.refunded"
    assert verdict.headers == {"x-newbank-retries": 0, "trace": "kept", "x-newbank-redrives": 1}


def test_verdict_falls_back_to_event_type_and_caps_redrives() -> None:
    assert redrive_verdict({}, "payment.completed", CASHBACK_PAYMENTS, 3).routing_key == "payment.completed"
    assert not redrive_verdict({}, "merchant.registered", CASHBACK_PAYMENTS, 3).redrive
    capped = redrive_verdict({"x-newbank-redrives": 3}, "payment.completed", CASHBACK_PAYMENTS, 3)
    assert not capped.redrive and "3 times" in capped.reason
    permanent = redrive_verdict({"x-newbank-error": "MalformedEvent: no id"}, "payment.completed", CASHBACK_PAYMENTS, 3)
    assert not permanent.redrive
