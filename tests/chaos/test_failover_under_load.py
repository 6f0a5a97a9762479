"""Issue 7: each failure the platform is built to survive, injected under payment load.

Every scenario runs against the one platform of the session (``conftest.py``), under 20 merchants
paying with same-key retries, and ends with the same checks (``newbank.chaos.checks``): every
acknowledged payment present with its postings, no duplicate, ledger verified, cashback exactly once,
no process left behind — plus the issue's targets (0 lost, 0 duplicated, no payment failing for good,
write unavailability under 5 s / 30 s, cashback drained within 60 s of the broker's return).

Order: the cheap, local faults first, the database ones last; each scenario starts by waiting for a
healthy platform and leaves one behind. ``newbank chaos <scenario>`` runs the same code by hand.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from newbank.chaos.health import processes_of
from newbank.chaos.report import Result, render
from newbank.chaos.scenarios import run_blocking
from newbank.chaos.world import Target, World
from newbank.runtime import procs
from newbank.runtime.platform import running_pids

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]
CHAOS_TIME_SLACK = float(os.environ.get("NEWBANK_CHAOS_TIME_SLACK", "2.0"))


def _run(target: Target, world: World, scenario: str) -> Result:
    result = run_blocking(target, scenario, world=world)
    print("\n" + render(result))
    assert result.verdict.lost == 0, render(result)
    assert result.verdict.duplicates == 0, render(result)
    assert result.verdict.ok, [c for c in result.verdict.checks if not c.ok]
    # Durations are figures of a noisy 2-core machine, printed above against the exact targets
    # (and held exactly by `newbank chaos`); the test bounds them at CHAOS_TIME_SLACK × the target so a
    # busy CI machine does not flake, while a platform that does not recover still fails. Counts of
    # lost, duplicated and failed-for-good payments are never widened.
    assert not result.missed_targets(CHAOS_TIME_SLACK), result.missed_targets(CHAOS_TIME_SLACK)
    assert not result.run.findings, result.run.findings
    return result


def test_transaction_instance_killed(chaos_target: Target, chaos_world: World) -> None:
    """3: HAProxy stops sending to it within its check interval; the controller brings it back."""
    result = _run(chaos_target, chaos_world, "transaction-instance")
    assert result.run.recovery_s["haproxy marked it down"] < 5  # inter 1 s, fall 2 (+ the poll)
    assert result.run.facts["instances_after"] == result.run.facts["instances_before"]


def test_cashback_consumer_killed_mid_batch(chaos_target: Target, chaos_world: World) -> None:
    """4: killed with deliveries not yet acknowledged; their redelivery credits nothing twice."""
    result = _run(chaos_target, chaos_world, "cashback-consumer")
    assert int(result.run.facts["unacked_at_kill"]) > 0  # type: ignore[call-overload]


def test_broker_outage_with_data(chaos_target: Target, chaos_world: World) -> None:
    """2a: payments keep succeeding while RabbitMQ is down; the outboxes flush when it is back."""
    result = _run(chaos_target, chaos_world, "broker-outage")
    assert result.figures["unavailability window s"] == 0.0


def test_broker_outage_started_empty(chaos_target: Target, chaos_world: World) -> None:
    """2b: the same, but the broker comes back without its data folder (no queues, no messages): what
    it held is re-driven from the outboxes (messaging.broker's marker queue), nothing twice."""
    result = _run(chaos_target, chaos_world, "broker-outage-empty")
    assert result.figures["unavailability window s"] == 0.0


def test_replica_killed(chaos_target: Target, chaos_world: World) -> None:
    """5: writes continue (synchronous mode is not strict), the replica catches up when it returns."""
    _run(chaos_target, chaos_world, "replica")


def test_primary_patroni_killed_and_supervised(chaos_target: Target, chaos_world: World) -> None:
    """1c+: Patroni alone killed on the primary, no hold: the controller's supervisor starts it again long
    before its leader key (ttl 20 s) expires; no failover, the same postmasters, writes never stop."""
    result = _run(chaos_target, chaos_world, "primary-patroni-supervised")
    node = result.run.facts["node"]
    # Measured 0.2-0.6 s; bound at half the leader key's ttl (20 s) so a busy CI machine does not flake.
    assert result.run.recovery_s[f"supervisor restarted patroni on {node}"] < 10
    assert result.run.facts["failover"] is False and result.run.facts["postmasters unchanged"] is True


def test_primary_postmaster_killed(chaos_target: Target, chaos_world: World) -> None:
    """1a: Patroni restarts the postmaster in place; writes back within 5 s."""
    _run(chaos_target, chaos_world, "primary-postmaster")


def test_primary_node_killed(chaos_target: Target, chaos_world: World) -> None:
    """1b: the replica is promoted (Patroni ttl 20 s); writes back within 30 s; the node, held down as
    lost until then, is started again by the supervisor and rejoins."""
    result = _run(chaos_target, chaos_world, "primary-node")
    assert f"supervisor restarted patroni on {result.run.facts['node']}" in result.run.recovery_s


def test_primary_patroni_killed(chaos_target: Target, chaos_world: World) -> None:
    """1c: the old primary's postmaster outlives its Patroni (held down through the failover); it must
    acknowledge nothing the new one lacks. Then the supervisor, not the test, restarts that Patroni."""
    result = _run(chaos_target, chaos_world, "primary-patroni")
    node = result.run.facts["node"]
    assert f"supervisor restarted patroni on {node}" in result.run.recovery_s
    assert result.run.facts[f"supervisor restarted patroni on {node} s after release"] < 10  # type: ignore[operator]


def test_down_leaves_no_process(chaos_platform: Any) -> None:
    """Last: ``newbank down --purge`` stops every process of the platform (by PID)."""
    layout = chaos_platform.layout
    pids = running_pids(layout)
    result = chaos_platform.cli("down", "--purge", timeout_s=180)
    assert result.returncode == 0, result.stdout + result.stderr
    chaos_platform.stopped = True
    assert processes_of(chaos_platform.home) == {}
    assert [pid for pid in pids.values() if procs.pid_alive(pid)] == []
