"""The scaling decision: metrics + policy + history -> desired replicas and a reason.

A pure function following the Horizontal Pod Autoscaler's algorithm, so that an SRE who knows the HPA
can predict the operator: per metric ``ceil(current * observed / target)`` unless the ratio is within
the tolerance band; the largest proposal wins; a missing metric blocks scaling down (never up);
scale-down takes the highest recommendation of its stabilisation window, scale-up the lowest of its own;
step limits per decision; min/max last. The same function drives kopf and the local runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# Guards ceil() against float noise: 3 * (60 / 50) is 3.5999999999999996 and must stay 4, not become 3.
_EPSILON = 1e-9


@dataclass(frozen=True)
class MetricReading:
    """One metric against its target; ``value`` None means it could not be read this round.

    ``total`` marks a value summed over all replicas (a queue backlog): its ratio is taken against
    ``target * current`` (the HPA's AverageValue), otherwise against ``target`` (a per-replica average
    such as requests/s per replica, or a value such as p95 latency).
    """

    name: str
    value: float | None
    target: float
    total: bool = False


@dataclass(frozen=True)
class Behavior:
    """Stabilisation window and step limits for one direction (the HPA's ``behavior.scaleUp/Down``).

    A step is limited to the larger of ``max_step_replicas`` and ``max_step_percent`` of the current
    count (the HPA's default ``selectPolicy: Max``); the limits apply per decision.
    """

    stabilization_window_s: float
    max_step_replicas: int
    max_step_percent: float


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    scale_up: Behavior = Behavior(stabilization_window_s=0, max_step_replicas=4, max_step_percent=100)
    scale_down: Behavior = Behavior(stabilization_window_s=300, max_step_replicas=1, max_step_percent=50)


@dataclass(frozen=True)
class Recommendation:
    """A past raw recommendation (after min/max), the history the stabilisation windows look at."""

    at: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    recommendation: int
    reason: str
    proposals: dict[str, int] = field(default_factory=dict)
    history: tuple[Recommendation, ...] = ()

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def propose(reading: MetricReading, current: int, tolerance: float) -> int | None:
    """The replica count one metric asks for, or None when the metric is missing."""
    if reading.value is None or reading.target <= 0:
        return None
    base = max(current, 1)
    ratio = reading.value / (reading.target * base) if reading.total else reading.value / reading.target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(0, math.ceil(base * ratio - _EPSILON))


def _step_bounds(current: int, policy: ScalingPolicy) -> tuple[int, int]:
    up, down = policy.scale_up, policy.scale_down
    highest = max(current + up.max_step_replicas, math.ceil(current * (1 + up.max_step_percent / 100)))
    lowest = min(current - down.max_step_replicas, math.floor(current * (1 - down.max_step_percent / 100)))
    return max(lowest, 0), highest


def decide(
    readings: Sequence[MetricReading],
    current: int,
    policy: ScalingPolicy,
    history: Sequence[Recommendation],
    now: float,
) -> Decision:
    """Decide the replica count; returns the decision and the history to keep for the next call."""
    proposals: dict[str, int] = {}
    missing: list[str] = []
    for reading in readings:
        proposal = propose(reading, current, policy.tolerance)
        if proposal is None:
            missing.append(reading.name)
        else:
            proposals[reading.name] = proposal

    notes: list[str] = []
    if not proposals:
        raw = current
        notes.append("no metrics" if not readings else f"metrics missing ({', '.join(missing)})")
    else:
        winner = max(proposals, key=lambda name: proposals[name])
        raw = proposals[winner]
        notes.append(f"{winner} asks {raw}")
        if missing and raw < current:
            raw = current
            notes.append(f"not scaling down while {', '.join(missing)} missing")
    recommendation = min(max(raw, policy.min_replicas), policy.max_replicas)
    if recommendation != raw:
        notes.append(f"bounded to {recommendation} by min/max")

    keep_s = max(policy.scale_up.stabilization_window_s, policy.scale_down.stabilization_window_s)
    kept = [r for r in history if now - r.at <= keep_s]
    kept.append(Recommendation(at=now, replicas=recommendation))

    # The HPA's stabilisation: never go above the lowest recommendation of the scale-up window, nor
    # below the highest of the scale-down window.
    up_floor = min(r.replicas for r in kept if now - r.at <= policy.scale_up.stabilization_window_s)
    down_ceiling = max(r.replicas for r in kept if now - r.at <= policy.scale_down.stabilization_window_s)
    desired = current
    if desired < up_floor:
        desired = up_floor
    if desired > down_ceiling:
        desired = down_ceiling
    if desired != recommendation and (recommendation < current or recommendation > current):
        direction = "scale-down" if recommendation < current else "scale-up"
        notes.append(f"{direction} window holds {desired}")

    lowest, highest = _step_bounds(current, policy)
    stepped = min(max(desired, lowest), highest)
    if stepped != desired:
        notes.append(f"step limit {current}->{stepped}")
    final = min(max(stepped, policy.min_replicas), policy.max_replicas)
    if final != stepped:
        notes.append(f"min/max {final}")

    verb = "scale up" if final > current else "scale down" if final < current else "hold"
    reason = f"{verb} {current}->{final}: " + "; ".join(notes)
    return Decision(
        desired=final,
        current=current,
        recommendation=recommendation,
        reason=reason,
        proposals=proposals,
        history=tuple(kept),
    )
