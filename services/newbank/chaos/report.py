"""A chaos run as a human reads it: the timeline, the load's error rate over time, the figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from newbank.chaos.checks import Verdict
from newbank.chaos.load import PaymentLoad
from newbank.chaos.timeline import Run


@dataclass
class Result:
    scenario: str
    title: str
    run: Run
    load: PaymentLoad
    verdict: Verdict
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # name → (limit, measured)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.missed_targets() and not self.run.findings

    def missed_targets(self, time_slack: float = 1.0) -> list[str]:
        """The targets not met. ``time_slack`` widens the limits that are durations (names ending in
        " s") — never the counts of lost, duplicated or failed payments, which must stay 0."""
        missed = []
        for name, (limit, measured) in self.targets.items():
            bound = limit * time_slack if name.endswith(" s") else limit
            if measured is None or (isinstance(measured, float) and math.isnan(measured)) or measured > bound:
                missed.append(f"{name} {measured} > {bound}")
        return missed


def figures(run: Run, load: PaymentLoad, verdict: Verdict) -> dict[str, Any]:
    acked = load.acknowledged
    window = load.unavailability(run.fault_at) if run.fault_at else None
    latencies = sorted((o.acked_at or 0) - o.attempts[0].sent for o in acked)
    refused: dict[str, int] = {}
    for order in load.refused:
        refused[str(order.status)] = refused.get(str(order.status), 0) + 1
    failed_reads = sum(1 for r in load.reads if not r.ok)
    kinds: dict[str, int] = {}
    for attempt in load.failed_attempts():
        kinds[attempt.outcome] = kinds.get(attempt.outcome, 0) + 1
    out: dict[str, Any] = {
        "payments sent": len(load.orders),
        "acknowledged": len(acked),
        "lost": verdict.lost,
        "duplicates": verdict.duplicates,
        "refused": refused,
        "failed for good": len(load.unresolved),
        "applied though unanswered": verdict.applied_unanswered,
        "retried payments": sum(1 for o in load.orders if len(o.attempts) > 1),
        "failed attempts": len(load.failed_attempts()),
        "failed attempts by answer": kinds,
        "unavailability window s": round(window[2], 2) if window else 0.0,
        "slowest acknowledgement s": round(latencies[-1], 2) if latencies else 0.0,
        "reads failed": f"{failed_reads} of {len(load.reads)}",
        "cashback settled after load s": round(verdict.settle_s, 1),
        "recovery s": dict(run.recovery_s),
    }
    back = run.facts.get("broker_back_at")
    if isinstance(back, float) and verdict.last_cashback_at:
        out["broker back → last cashback credited s"] = round(verdict.last_cashback_at - back, 2)
    return out


def error_rate(load: PaymentLoad, origin: float, step_s: float = 2.0) -> list[tuple[float, int, int]]:
    """(seconds from ``origin``, attempts, failed attempts) per ``step_s`` bucket, by completion time."""
    attempts = [a for o in load.orders for a in o.attempts]
    if not attempts:
        return []
    start = min(a.done for a in attempts)
    buckets: dict[int, list[int]] = {}
    for attempt in attempts:
        slot = buckets.setdefault(int((attempt.done - start) // step_s), [0, 0])
        slot[0] += 1
        slot[1] += 0 if attempt.ok or attempt.outcome in ("402",) else 1
    return [(start + i * step_s - origin, *buckets.get(i, [0, 0])) for i in range(max(buckets) + 1)]


def render(result: Result) -> str:
    run, load = result.run, result.load
    origin = run.fault_at or load.started_at
    lines = [f"== chaos {result.scenario}: {result.title}", "", "timeline (seconds from the fault):"]
    lines += [f"  {m.at - origin:+7.1f}  {m.label}{': ' + m.detail if m.detail else ''}" for m in run.marks]
    lines += ["", "payment attempts per 2 s (ok / failed):"]
    for offset, total, failed in error_rate(load, origin):
        bar = "#" * min(40, failed) + ("+" if failed > 40 else "")
        lines.append(f"  {offset:+7.1f}  {total - failed:5d} ok {failed:4d} failed  {bar}")
    lines += ["", "figures:"]
    for name, value in result.figures.items():
        lines.append(f"  {name:<38} {value}")
    if run.facts:
        lines.append(f"  {'facts':<38} {run.facts}")
    lines += ["", "checks:"]
    lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in result.verdict.checks]
    for name, (limit, measured) in result.targets.items():
        hit = measured is not None and not (isinstance(measured, float) and math.isnan(measured)) and measured <= limit
        lines.append(f"  [{'ok' if hit else 'MISS'}] target {name}: {measured} (limit {limit})")
    for finding in run.findings:
        lines.append(f"  [FINDING] {finding}")
    lines += ["", f"result: {'PASS' if result.ok else 'FAIL'}"]
    return "\n".join(lines)


def as_dict(result: Result) -> dict[str, Any]:
    return {
        "scenario": result.scenario,
        "ok": result.ok,
        "figures": result.figures,
        "facts": {k: str(v) for k, v in result.run.facts.items()},
        "timeline": [
            {"t": round(m.at - (result.run.fault_at or 0), 2), "label": m.label, "detail": m.detail}
            for m in result.run.marks
        ],
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.verdict.checks],
        "targets": {k: {"limit": v[0], "measured": v[1]} for k, v in result.targets.items()},
        "findings": result.run.findings,
    }
