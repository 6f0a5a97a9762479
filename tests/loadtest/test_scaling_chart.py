"""The chart is drawn from a fixed table into a file; a reader opens it, a test checks it is a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from loadtest.chart import draw_scaling_chart
from loadtest.report import ScalingPoint


def test_draws_png_with_seed_and_ceilings(tmp_path: Path) -> None:
    points = [ScalingPoint(n, rate, 20, 60, 120, 0) for n, rate in ((1, 420.0), (2, 800.0), (3, 1000.0), (4, 1010.0))]
    path = draw_scaling_chart(
        points, tmp_path / "out" / "scaling.png", db_ceiling_tps=2500, framework_ceiling_rps=4000, title_note="test"
    )
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) > 10_000


def test_draws_with_a_single_point_and_no_ceilings(tmp_path: Path) -> None:
    path = draw_scaling_chart([ScalingPoint(1, 50.0, 1, 2, 3, 0)], tmp_path / "one.png")
    assert path.read_bytes().startswith(b"\x89PNG")
