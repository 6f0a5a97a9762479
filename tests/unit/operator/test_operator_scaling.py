"""Table-driven tests of the HPA-style scaling decision."""

from __future__ import annotations

import pytest

from newbank_operator.scaling import (
    Behavior,
    MetricReading,
    Recommendation,
    ScalingPolicy,
    decide,
    propose,
)

POLICY = ScalingPolicy(
    min_replicas=2,
    max_replicas=10,
    tolerance=0.1,
    scale_up=Behavior(stabilization_window_s=0, max_step_replicas=4, max_step_percent=100),
    scale_down=Behavior(stabilization_window_s=300, max_step_replicas=1, max_step_percent=50),
)


def rps(value: float | None, target: float = 50) -> MetricReading:
    return MetricReading("rps", value, target)


def inflight(value: float | None, target: float = 10) -> MetricReading:
    return MetricReading("in_flight", value, target)


def backlog(value: float | None, target: float = 100) -> MetricReading:
    return MetricReading("backlog", value, target, total=True)


@pytest.mark.parametrize(
    ("reading", "current", "expected"),
    [
        (rps(100), 3, 6),  # ceil(3 * 100/50)
        (rps(60), 3, 4),  # ceil(3 * 1.2) = 4 despite 3.5999.. float noise
        (rps(54), 3, 3),  # ratio 1.08 within tolerance
        (rps(46), 3, 3),  # ratio 0.92 within tolerance
        (rps(44), 3, 3),  # ceil(3 * 0.88) = 3
        (rps(10), 5, 1),  # ceil(5 * 0.2)
        (rps(0), 5, 0),
        (rps(None), 3, None),
        (backlog(1000), 2, 10),  # total: ceil(1000 / 100)
        (backlog(150), 1, 2),
        (backlog(105), 1, 1),  # ratio 1.05 within tolerance
        (rps(100), 0, 2),  # from zero, treat as one replica
    ],
)
def test_propose(reading: MetricReading, current: int, expected: int | None) -> None:
    assert propose(reading, current, tolerance=0.1) == expected


@pytest.mark.parametrize(
    ("name", "readings", "current", "history", "expected"),
    [
        ("up on rps", [rps(100)], 3, [], 6),
        ("within tolerance holds", [rps(53)], 4, [], 4),
        ("largest metric wins", [rps(60), inflight(20)], 3, [], 6),
        ("largest metric wins, other order", [inflight(20), rps(60)], 3, [], 6),
        ("step limit up: max(4, 100%) from 3 is 7", [rps(500)], 3, [], 7),
        ("step limit up from 6 is 12, max 10", [rps(500)], 6, [], 10),
        ("max bound", [rps(1000)], 9, [], 10),
        ("min bound", [rps(1)], 2, [], 2),
        ("below min goes to min", [rps(50)], 1, [], 2),
        ("above max goes to max", [rps(50)], 12, [], 10),
        ("missing metric blocks down", [rps(10), inflight(None)], 6, [], 6),
        ("missing metric does not block up", [rps(100), inflight(None)], 3, [], 6),
        ("all missing holds", [rps(None), inflight(None)], 5, [], 5),
        ("no metrics holds", [], 5, [], 5),
        # Down: the window's highest recommendation wins (no history: the current one only).
        ("down, empty window, step limit max(1, 50%)", [rps(10)], 8, [], 4),
        ("down held by window", [rps(10)], 8, [Recommendation(at=900, replicas=8)], 8),
        ("down to the window's max", [rps(10)], 8, [Recommendation(at=900, replicas=5)], 5),
        ("old history outside window ignored", [rps(10)], 4, [Recommendation(at=600, replicas=9)], 2),
        ("up ignores down history", [rps(100)], 3, [Recommendation(at=990, replicas=2)], 6),
    ],
)
def test_decide(
    name: str,
    readings: list[MetricReading],
    current: int,
    history: list[Recommendation],
    expected: int,
) -> None:
    decision = decide(readings, current, POLICY, history, now=1000.0)
    assert decision.desired == expected, decision.reason


def test_scale_up_window_takes_lowest_recent_recommendation() -> None:
    policy = ScalingPolicy(
        min_replicas=1,
        max_replicas=20,
        scale_up=Behavior(stabilization_window_s=60, max_step_replicas=10, max_step_percent=100),
    )
    history = [Recommendation(at=950, replicas=4), Recommendation(at=900, replicas=2)]
    decision = decide([rps(150)], 3, policy, history, now=1000.0)
    assert decision.recommendation == 9
    assert decision.desired == 4  # the lowest within 60 s (t=950), t=900 is out of the window


def test_history_is_pruned_and_extended() -> None:
    history = [Recommendation(at=100, replicas=9), Recommendation(at=800, replicas=4)]
    decision = decide([rps(50)], 4, POLICY, history, now=1000.0)
    assert [r.at for r in decision.history] == [800, 1000.0]
    assert decision.history[-1].replicas == 4


def test_stabilised_scale_down_over_time() -> None:
    """Load drops: the count holds for the scale-down window, then steps down to the minimum."""
    history: tuple[Recommendation, ...] = ()
    current = 3
    timeline: dict[int, int] = {}
    for t in range(0, 901, 30):
        load = rps(100) if t < 120 else rps(5)
        decision = decide([load], current, POLICY, history, now=float(t))
        history, current = decision.history, decision.desired
        timeline[t] = current
    assert timeline[0] == 6 and timeline[30] == 10  # doubled, then capped by max
    assert timeline[390] == 10  # t=90 recommended 10: held until it leaves the 300 s window
    assert timeline[420] < 10
    assert timeline[900] == 2


def test_reason_names_the_winner_and_limits() -> None:
    decision = decide([rps(500), inflight(None)], 3, POLICY, [], now=0.0)
    assert decision.reason.startswith("scale up 3->7")
    assert "rps asks 30" in decision.reason
    assert "step limit" in decision.reason
    assert decision.changes
