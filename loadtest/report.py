"""Pure arithmetic of the load test and the scaling benchmark: percentiles, windows, the table.

Kept free of I/O (apart from reading files handed to it) so that the figures the closing note quotes
come from code that has its own tests (``tests/loadtest/test_report.py``).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The seed's experiment (Java/Spring, K6, 4 minutes of load per point, 50% CPU / 300 MB per instance).
SEED_TRANSACTIONS: dict[int, int] = {1: 9_500, 2: 18_500, 4: 34_000}
SEED_SECONDS_PER_POINT = 240


def seed_per_second() -> dict[int, float]:
    """The seed's points as transactions per second, so they sit on the same axis as ours."""
    return {n: total / SEED_SECONDS_PER_POINT for n, total in SEED_TRANSACTIONS.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values. Same rule as locust's."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


@dataclass(frozen=True)
class PaymentRecord:
    """One payment as a merchant user saw it: first attempt time, total latency, final status."""

    started_at: float  # epoch seconds of the first attempt
    latency_ms: float  # first attempt to final answer, retries included
    status: int  # final HTTP status, 0 for a connection error
    attempts: int = 1
    payment_id: str | None = None
    account_id: str | None = None
    merchant_id: str | None = None
    amount: int = 0
    currency: str = ""
    refunded: int = 0
    created_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaymentRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def read_records(results_dir: Path) -> list[PaymentRecord]:
    """Every payment record written by the locust processes (``payments-<pid>.jsonl``)."""
    records: list[PaymentRecord] = []
    for path in sorted(results_dir.glob("payments-*.jsonl")):
        with path.open() as handle:
            records.extend(PaymentRecord.from_json(json.loads(line)) for line in handle if line.strip())
    return records


def read_status_counts(results_dir: Path) -> dict[str, dict[str, int]]:
    """Request name → HTTP status → count, summed over the locust processes (``statuses-<pid>.json``)."""
    total: dict[str, dict[str, int]] = {}
    for path in sorted(results_dir.glob("statuses-*.json")):
        for name, by_status in json.loads(path.read_text()).items():
            slot = total.setdefault(name, {})
            for status, count in by_status.items():
                slot[status] = slot.get(status, 0) + int(count)
    return total


def server_errors(status_counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """Requests answered with a 5xx, per request name (the load test's first check)."""
    found: dict[str, int] = {}
    for name, by_status in status_counts.items():
        count = sum(n for status, n in by_status.items() if status.isdigit() and int(status) >= 500)
        if count:
            found[name] = count
    return found


@dataclass(frozen=True)
class WindowStats:
    """The payments whose first attempt started inside the measurement window."""

    seconds: float
    payments: int  # answered 201
    failed: int  # anything else, after retries
    payments_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        total = self.payments + self.failed
        return self.failed / total if total else 0.0


def window_stats(records: Iterable[PaymentRecord], start: float, end: float) -> WindowStats:
    """Throughput and latency over [start, end): warm-up and the tail of the run stay out."""
    inside = [r for r in records if start <= r.started_at < end]
    ok = [r.latency_ms for r in inside if r.status == 201]
    seconds = max(end - start, 1e-9)
    return WindowStats(
        seconds=seconds,
        payments=len(ok),
        failed=len(inside) - len(ok),
        payments_per_s=len(ok) / seconds,
        p50_ms=percentile(ok, 50),
        p95_ms=percentile(ok, 95),
        p99_ms=percentile(ok, 99),
    )


def read_locust_stats(csv_path: Path) -> dict[str, dict[str, str]]:
    """Locust's ``<prefix>_stats.csv`` as ``{"<Type> <Name>": row}`` (the total row is ``"Aggregated"``)."""
    rows: dict[str, dict[str, str]] = {}
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = row["Name"] if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}".strip()
            rows[key] = row
    return rows


@dataclass
class ScalingPoint:
    """One row of the scaling table."""

    instances: int
    payments_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    payments: int = 0
    instances_cpu: float = math.nan  # cores used by all transaction instances together
    locust_cpu: float = math.nan  # cores used by the load generator
    machine_cpu: float = math.nan  # cores used by the whole machine
    foreign_cpu: float = math.nan  # cores the machine used for anything but this platform and locust
    cashback_lag_p99_ms: float = math.nan
    # Median CPU ms of loadtest.speed_probe's fixed work in the window: how fast the machine was (lower = faster).
    probe_ms: float = math.nan
    # The payments' p99 by HAProxy's own timer (loadtest.ingress_log): p99_ms without the load generator's side.
    ingress_p99_ms: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def efficiencies(points: Sequence[ScalingPoint]) -> dict[int, float]:
    """Scaling efficiency against the 1-instance point: rate(n) / (n × rate(1))."""
    base = next((p.payments_per_s for p in points if p.instances == 1), None)
    if not base:
        return {p.instances: math.nan for p in points}
    return {p.instances: p.payments_per_s / (p.instances * base) for p in points}


def seed_efficiencies() -> dict[int, float]:
    per_s = seed_per_second()
    return {n: per_s[n] / (n * per_s[1]) for n in per_s}


def cpu_ms_per_payment(point: ScalingPoint) -> float:
    """CPU the transaction instances spent per payment (all their work: HTTP, SQL, events), in ms.

    Nearly independent of how crowded the machine is, unlike payments/s: the figure to compare with
    the budget of one instance (500 ms of CPU per second → 400 payments/s needs ≤ 1.25 ms each).
    """
    return point.instances_cpu * 1000 / point.payments_per_s if point.payments_per_s else math.nan


def _fmt(value: float, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = spec.split(".")[0]
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(value, spec)


def format_table(points: Sequence[ScalingPoint]) -> str:
    """The one-screen table the benchmark prints and the closing note quotes."""
    eff = efficiencies(points)
    seed = seed_per_second()
    header = (
        f"{'inst':>4} {'pay/s':>8} {'eff':>5} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'ingr p99':>8} {'err %':>6} "
        f"{'inst CPU':>8} {'ms CPU/pay':>10} {'locust CPU':>10} {'host CPU':>8} {'not ours':>8} "
        f"{'cb lag p99':>10} {'probe ms':>8} {'seed/s':>7} {'x seed':>6}"
    )
    lines = [header, "-" * len(header)]
    for p in sorted(points, key=lambda p: p.instances):
        seed_rate = seed.get(p.instances, math.nan)
        lines.append(
            f"{p.instances:>4} {_fmt(p.payments_per_s, '8.1f')} {_fmt(eff[p.instances], '5.2f')} "
            f"{_fmt(p.p50_ms, '7.0f')} {_fmt(p.p95_ms, '7.0f')} {_fmt(p.p99_ms, '7.0f')} "
            f"{_fmt(p.ingress_p99_ms, '8.0f')} {_fmt(p.error_rate * 100, '6.2f')} {_fmt(p.instances_cpu, '8.2f')} "
            f"{_fmt(cpu_ms_per_payment(p), '10.2f')} {_fmt(p.locust_cpu, '10.2f')} "
            f"{_fmt(p.machine_cpu, '8.2f')} {_fmt(p.foreign_cpu, '8.2f')} {_fmt(p.cashback_lag_p99_ms, '10.0f')} "
            f"{_fmt(p.probe_ms, '8.2f')} {_fmt(seed_rate, '7.1f')} {_fmt(p.payments_per_s / seed_rate, '6.1f')}"
        )
    return "\n".join(lines)


def format_ceilings(
    points: Sequence[ScalingPoint],
    db_tps: float | None,
    framework_rps: float | None,
    *,
    db_probe_ms: float = math.nan,
    framework_probe_ms: float = math.nan,
    db_alone: bool = True,
) -> str:
    """Payments/s as a fraction of each ceiling, so figures read as ratios on a noisy machine.

    ``db_alone``: the services were paused while pgbench ran (otherwise their pipeline ran beside it)."""
    services = "services paused" if db_alone else "services RUNNING"
    lines = [
        f"database ceiling (pgbench, SELECT make_payment, {services}): {_fmt(db_tps or math.nan, '.1f')} tps"
        f" (probe {_fmt(db_probe_ms, '.2f')} ms)",
        f"framework ceiling (trivial FastAPI, 1 instance, 50% CPU): {_fmt(framework_rps or math.nan, '.1f')} req/s"
        f" (probe {_fmt(framework_probe_ms, '.2f')} ms)",
        f"{'inst':>4} {'pay/s':>8} {'÷ db':>6} {'÷ (n × framework)':>18}",
    ]
    for p in sorted(points, key=lambda p: p.instances):
        db_ratio = p.payments_per_s / db_tps if db_tps else math.nan
        fw_ratio = p.payments_per_s / (p.instances * framework_rps) if framework_rps else math.nan
        lines.append(
            f"{p.instances:>4} {_fmt(p.payments_per_s, '8.1f')} {_fmt(db_ratio, '6.2f')} {_fmt(fw_ratio, '18.2f')}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class LatencyLevel:
    """The runs of one think time of the below-saturation series, read together.

    On this machine identical runs scatter (p99 168–863 ms at one load in the sixth session), so one run
    per level can say yes or no by chance: ``--latency-repeats`` runs each level several times, and a
    level holds the target only if every one of its runs did.
    """

    wait: str
    runs: tuple[ScalingPoint, ...]

    @property
    def instances(self) -> int:
        return self.runs[0].instances

    def median(self, value: Callable[[ScalingPoint], float]) -> float:
        values = [v for v in map(value, self.runs) if not math.isnan(v)]
        return float(statistics.median(values)) if values else math.nan

    @property
    def payments_per_s(self) -> float:
        return self.median(lambda p: p.payments_per_s)

    @property
    def worst_p99_ms(self) -> float:
        return max(p.p99_ms for p in self.runs)

    def runs_under(self, p99_target_ms: float) -> int:
        return sum(1 for p in self.runs if p.p99_ms < p99_target_ms and p.payments_per_s > 0)

    def held(self, p99_target_ms: float) -> bool:
        return self.runs_under(p99_target_ms) == len(self.runs)


def latency_levels(points: Sequence[ScalingPoint]) -> list[LatencyLevel]:
    """The series' runs grouped by think time, slowest level (median payments/s) first."""
    by_wait: dict[str, list[ScalingPoint]] = {}
    for point in points:
        by_wait.setdefault(str(point.extra.get("wait", "?")), []).append(point)
    levels = [LatencyLevel(wait, tuple(runs)) for wait, runs in by_wait.items()]
    return sorted(levels, key=lambda level: level.payments_per_s)


def latency_bound_level(points: Sequence[ScalingPoint], p99_target_ms: float) -> LatencyLevel | None:
    """The level with the most payments/s (median of its runs) whose p99 stayed under the target in every
    run, or None when none did.

    A saturated point's p99 is the queue in front of the platform, not its speed; this is the other
    reading of the same instance: how much it carries while its users still get their answer in time.
    """
    held = [level for level in latency_levels(points) if level.held(p99_target_ms)]
    return max(held, key=lambda level: level.payments_per_s, default=None)


def _probe_range(runs: Sequence[ScalingPoint]) -> str:
    """The probe's values over a level's runs: one value, or lowest–highest."""
    values = sorted(p.probe_ms for p in runs if not math.isnan(p.probe_ms))
    if not values:
        return "-"
    if len(values) == 1 or values[0] == values[-1]:
        return f"{values[0]:.2f}"
    return f"{values[0]:.2f}–{values[-1]:.2f}"


def format_latency_table(points: Sequence[ScalingPoint], p99_target_ms: float) -> str:
    """One row per think time on a fixed instance count (medians over its runs), then the highest rate
    kept under the p99 target in every run."""
    target = f"p99<{p99_target_ms:.0f}"
    header = (
        f"{'inst':>4} {'think s':>9} {'runs':>4} {'pay/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'p99 max':>7} {target:>8} {'ingr p99':>8} {'err %':>6} {'inst CPU':>8} {'ms CPU/pay':>10} {'host CPU':>8} "
        f"{'cb lag p99':>10} {'probe ms':>13}"
    )
    lines = [header, "-" * len(header)]
    levels = latency_levels(points)
    for level in levels:
        under, runs = level.runs_under(p99_target_ms), len(level.runs)
        verdict = "yes" if under == runs else "no" if under == 0 else f"{under}/{runs}"
        lines.append(
            f"{level.instances:>4} {level.wait:>9} {runs:>4} {_fmt(level.payments_per_s, '8.1f')} "
            f"{_fmt(level.median(lambda p: p.p50_ms), '7.0f')} {_fmt(level.median(lambda p: p.p95_ms), '7.0f')} "
            f"{_fmt(level.median(lambda p: p.p99_ms), '7.0f')} {_fmt(level.worst_p99_ms, '7.0f')} {verdict:>8} "
            f"{_fmt(level.median(lambda p: p.ingress_p99_ms), '8.0f')} "
            f"{_fmt(level.median(lambda p: p.error_rate * 100), '6.2f')} "
            f"{_fmt(level.median(lambda p: p.instances_cpu), '8.2f')} "
            f"{_fmt(level.median(cpu_ms_per_payment), '10.2f')} "
            f"{_fmt(level.median(lambda p: p.machine_cpu), '8.2f')} "
            f"{_fmt(level.median(lambda p: p.cashback_lag_p99_ms), '10.0f')} {_probe_range(level.runs):>13}"
        )
    repeated = any(len(level.runs) > 1 for level in levels)
    every_run = " in every run" if repeated else ""
    best = latency_bound_level(points, p99_target_ms)
    if best is None:
        lines.append(f"no think time kept the payments' p99 under {p99_target_ms:.0f} ms{every_run}")
    else:
        rate = "median " if repeated else ""
        lines.append(
            f"most payments/s with p99 under {p99_target_ms:.0f} ms{every_run} on {best.instances} instance(s): "
            f"{rate}{best.payments_per_s:.1f} (think time {best.wait} s, p99 {'at most ' if repeated else ''}"
            f"{best.worst_p99_ms:.0f} ms)"
        )
    return "\n".join(lines)
