"""The CashbackPlatform spec as policy objects, and the status built from one round (pure)."""

from __future__ import annotations

import pytest

from newbank.messaging.topology import CASHBACK_PAYMENTS, TOPOLOGY
from newbank_operator.control import queue_reading, transaction_readings
from newbank_operator.metrics import ObservedMetrics
from newbank_operator.rabbitmq import BrokerObservation, QueueStats, expected_bindings
from newbank_operator.scaling import Decision
from newbank_operator.spec import Targets, WatchedQueue, parse_spec
from newbank_operator.status import build_status, condition


def test_empty_spec_takes_the_defaults() -> None:
    spec = parse_spec({})
    assert spec.deployment == "newbank-transactions"
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (2, 10)
    assert spec.scaling.scale_down.stabilization_window_s == 300
    assert spec.queues == (WatchedQueue("cashback.payment-events", "newbank-cashback"),)
    assert spec.recovery.zero_consumer_grace_s == 120 and spec.recovery.max_redrives == 3
    assert spec.consumer_deployment("partners") == "newbank-partners"


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        ({"scaling": {"minReplicas": 5, "maxReplicas": 3}}, lambda s: s.scaling.max_replicas == 5),
        ({"scaling": {"scaleUp": {"maxStepReplicas": 2}}}, lambda s: s.scaling.scale_up.max_step_replicas == 2),
        ({"queues": []}, lambda s: s.queues == ()),
        ({"transactionService": {"metricsUrls": ["http://a"]}}, lambda s: s.metrics_urls == ("http://a",)),
        ({"recovery": {"deployments": {"cashback": "cb"}}}, lambda s: s.consumer_deployment("cashback") == "cb"),
        ({"rabbitmq": {"credentialsSecret": {"name": "x"}}}, lambda s: s.rabbitmq.secret_name == "x"),
    ],
)
def test_spec_fields(raw: dict, check) -> None:  # type: ignore[no-untyped-def]
    assert check(parse_spec(raw))


def test_readings_leave_out_metrics_with_target_zero() -> None:
    metrics = ObservedMetrics(2, 100.0, 50.0, 3.0, 120.0, 0.0)
    names = [r.name for r in transaction_readings(metrics, Targets(50, 0, 250))]
    assert names == ["requests_per_second", "p95_latency_ms"]
    reading = queue_reading(WatchedQueue("q", backlog_per_replica=10), QueueStats("q", ready=30, unacked=5))
    assert (reading.value, reading.target, reading.total) == (35, 10, True)
    assert queue_reading(WatchedQueue("q"), None).value is None


def test_condition_keeps_its_transition_time_while_unchanged() -> None:
    before = [{"type": "BrokerAvailable", "status": "True", "lastTransitionTime": "T0"}]
    assert condition("BrokerAvailable", True, "Available", "", before, "T1")["lastTransitionTime"] == "T0"
    assert condition("BrokerAvailable", False, "Unavailable", "", before, "T1")["lastTransitionTime"] == "T1"
    assert condition("BrokerAvailable", None, "x", "", [], "T1")["status"] == "Unknown"


def test_status_of_a_healthy_round() -> None:
    queues = {name: QueueStats(name, consumers=1) for name in TOPOLOGY.all_queue_names()}
    queues[CASHBACK_PAYMENTS.name] = QueueStats(CASHBACK_PAYMENTS.name, ready=7, unacked=1, consumers=2)
    queues[CASHBACK_PAYMENTS.dead_letter_queue] = QueueStats(CASHBACK_PAYMENTS.dead_letter_queue, ready=2)
    broker = BrokerObservation(
        True, queues, frozenset({TOPOLOGY.exchange, TOPOLOGY.dead_letter_exchange}), frozenset(expected_bindings())
    )
    decision = Decision(desired=4, current=3, recommendation=4, reason="scale up 3->4", proposals={"rps": 4})
    status = build_status(
        decision=decision,
        scaling_enabled=True,
        metrics=ObservedMetrics(3, 150.0, 50.0, 2.0, 80.0, 0.0),
        broker=broker,
        queues=[WatchedQueue(CASHBACK_PAYMENTS.name)],
        previous={},
        now="T",
        last_action="scaled",
        last_recovery={},
        last_scale_time="T",
        generation=3,
    )
    assert status["replicas"] == {"current": 3, "desired": 4, "reason": "scale up 3->4", "lastScaleTime": "T"}
    assert status["queues"]["backlog"] == 8 and status["queues"]["deadLettered"] == 2
    assert status["broker"] == "Available" and status["observedGeneration"] == 3
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "BrokerAvailable": "True",
        "QueuesHealthy": "True",
        "ScalingActive": "True",
    }


def test_status_names_missing_queues_and_stalled_consumers() -> None:
    queues = {name: QueueStats(name, consumers=1) for name in TOPOLOGY.all_queue_names()}
    del queues[TOPOLOGY.queues[1].name]
    queues[CASHBACK_PAYMENTS.name] = QueueStats(CASHBACK_PAYMENTS.name, ready=3, consumers=0)
    broker = BrokerObservation(
        True, queues, frozenset({TOPOLOGY.exchange, TOPOLOGY.dead_letter_exchange}), frozenset(expected_bindings())
    )
    status = build_status(
        decision=None,
        scaling_enabled=False,
        metrics=None,
        broker=broker,
        queues=[WatchedQueue(CASHBACK_PAYMENTS.name)],
        previous={},
        now="T",
        last_action="",
        last_recovery={},
        last_scale_time="",
    )
    healthy = next(c for c in status["conditions"] if c["type"] == "QueuesHealthy")
    assert healthy["status"] == "False" and healthy["reason"] == "Missing"
    assert TOPOLOGY.queues[1].name in healthy["message"] and "backlog without consumers" in healthy["message"]
    scaling = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert scaling["status"] == "False" and scaling["reason"] == "Disabled"


def test_local_loop_policy_from_file_or_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from newbank_operator.local_loop import SPEC_FILE, load_spec

    defaults = load_spec(tmp_path)
    assert (defaults.scaling.min_replicas, defaults.scaling.max_replicas) == (2, 6)
    assert len(defaults.queues) == len(TOPOLOGY.queues)
    (tmp_path / SPEC_FILE).write_text(json.dumps({"scaling": {"maxReplicas": 3, "syncPeriodSeconds": 2}}))
    custom = load_spec(tmp_path)
    assert custom.scaling.max_replicas == 3 and custom.sync_period_s == 2
    (tmp_path / SPEC_FILE).write_text("{not json")
    assert load_spec(tmp_path) == defaults
