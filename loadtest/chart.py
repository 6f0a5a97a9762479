"""The seed's chart, redrawn: payments per second against the number of transaction instances.

The seed plotted transactions per 4-minute point; both series here are per second so that ours (any
duration) and the seed's sit on one axis. The ceilings are drawn as lines so that the reader sees how
far the platform is from the database and from the framework on this machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: a benchmark writes a file, it never opens a window
import matplotlib.pyplot as plt

from loadtest.report import ScalingPoint, efficiencies, seed_per_second


def draw_scaling_chart(
    points: Sequence[ScalingPoint],
    path: Path,
    *,
    db_ceiling_tps: float | None = None,
    framework_ceiling_rps: float | None = None,
    title_note: str = "",
    users: int = 1000,
) -> Path:
    """Grouped bars (ours vs the seed, per second), the ideal line and both ceilings, as a PNG."""
    ordered = sorted(points, key=lambda p: p.instances)
    seed = seed_per_second()
    counts = sorted({p.instances for p in ordered} | set(seed))
    ours = {p.instances: p.payments_per_s for p in ordered}
    eff = efficiencies(ordered)

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    width = 0.38
    xs = list(range(len(counts)))
    our_bars = ax.bar(
        [x - width / 2 for x in xs],
        [ours.get(n, 0.0) for n in counts],
        width,
        label="NewBank Cashback (Python, this machine)",
        color="#1f77b4",
    )
    seed_bars = ax.bar(
        [x + width / 2 for x in xs],
        [seed.get(n, 0.0) for n in counts],
        width,
        label="seed (Java/Spring, 4 min per point, normalised per second)",
        color="#ff7f0e",
    )
    for bar, n in zip(our_bars, counts, strict=True):
        if n in ours:
            label = f"{ours[n]:.0f}/s" + (f"\neff {eff[n]:.2f}" if n in eff and n != 1 else "")
            ax.annotate(
                label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
            )
    for bar, n in zip(seed_bars, counts, strict=True):
        if n in seed:
            ax.annotate(
                f"{seed[n]:.0f}/s",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )

    if 1 in ours:
        ax.plot(xs, [ours[1] * n for n in counts], linestyle=":", color="#1f77b4", label="ideal linear scaling")
    if db_ceiling_tps:
        ax.axhline(
            db_ceiling_tps,
            linestyle="--",
            color="#2ca02c",
            label=f"database ceiling (pgbench make_payment) {db_ceiling_tps:.0f}/s",
        )
    if framework_ceiling_rps:
        ax.plot(
            xs,
            [framework_ceiling_rps * n for n in counts],
            linestyle="--",
            color="#9467bd",
            label=f"framework ceiling × n (trivial FastAPI, {framework_ceiling_rps:.0f}/s each)",
        )

    ax.set_yscale("log")
    ax.set_xticks(xs, [str(n) for n in counts])
    ax.set_xlabel("transaction-service instances (each 50% CPU, 300 MB)")
    ax.set_ylabel("payments per second (log scale)")
    title = f"Transaction requests processed vs number of transaction-service instances, {users} users"
    ax.set_title(title + (f"\n{title_note}" if title_note else ""), fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
