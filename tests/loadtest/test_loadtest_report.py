"""The benchmark's arithmetic: percentiles, the measured window, efficiency, the seed per second."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loadtest.report import (
    PaymentRecord,
    ScalingPoint,
    efficiencies,
    format_ceilings,
    format_latency_table,
    format_table,
    latency_bound_level,
    latency_levels,
    percentile,
    read_locust_stats,
    read_records,
    read_status_counts,
    seed_efficiencies,
    seed_per_second,
    server_errors,
    window_stats,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 100, 4),
        ([5], 99, 5),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 95, 95),
        ([3, 1, 2], 0, 1),
    ],
)
def test_percentile_nearest_rank(values: list[int], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_seed_is_normalised_per_second_over_four_minutes() -> None:
    per_s = seed_per_second()
    assert per_s[1] == pytest.approx(9_500 / 240)
    assert per_s[2] == pytest.approx(18_500 / 240)
    assert per_s[4] == pytest.approx(34_000 / 240)
    assert seed_efficiencies()[4] == pytest.approx(34_000 / (4 * 9_500))


def test_window_keeps_warm_up_and_tail_out() -> None:
    records = [PaymentRecord(started_at=t, latency_ms=10.0 * (t - 99), status=201) for t in range(100, 121)]
    records.append(PaymentRecord(started_at=110.5, latency_ms=5, status=503, attempts=5))
    stats = window_stats(records, 105, 115)
    assert stats.payments == 10  # 105..114
    assert stats.failed == 1
    assert stats.payments_per_s == pytest.approx(1.0)
    assert stats.error_rate == pytest.approx(1 / 11)
    assert stats.p50_ms == 100.0  # latencies 60..150: the 5th of 10
    assert stats.p99_ms == 150.0


def test_efficiency_against_one_instance() -> None:
    points = [ScalingPoint(n, rate, 1, 2, 3, 0) for n, rate in ((1, 400.0), (2, 760.0), (3, 900.0), (4, 880.0))]
    eff = efficiencies(points)
    assert eff[1] == 1.0
    assert eff[2] == pytest.approx(0.95)
    assert eff[3] == pytest.approx(0.75)
    assert eff[4] == pytest.approx(0.55)


def test_efficiency_without_base_point_is_nan() -> None:
    assert math.isnan(efficiencies([ScalingPoint(2, 100, 1, 1, 1, 0)])[2])


def test_table_and_ceilings_have_one_row_per_point() -> None:
    points = [ScalingPoint(2, 760, 40, 90, 180, 0.001, instances_cpu=1.0), ScalingPoint(1, 400, 35, 80, 150, 0)]
    table = format_table(points)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].split()[0] == "1"  # sorted by instances
    assert "0.95" in lines[3]
    ceilings = format_ceilings(points, db_tps=2000, framework_rps=4000)
    assert "0.20" in ceilings  # 400 / 2000
    assert "0.10" in ceilings  # 400 / (1 × 4000)
    assert "-" in format_ceilings(points, None, None)


def test_records_and_status_counts_from_several_processes(tmp_path: Path) -> None:
    (tmp_path / "payments-1.jsonl").write_text(
        json.dumps({"started_at": 1.0, "latency_ms": 3.0, "status": 201, "payment_id": "a", "unknown": 1}) + "\n"
    )
    (tmp_path / "payments-2.jsonl").write_text(json.dumps({"started_at": 2.0, "latency_ms": 4.0, "status": 0}) + "\n")
    (tmp_path / "statuses-1.json").write_text(json.dumps({"POST pay": {"201": 5, "503": 1}}))
    (tmp_path / "statuses-2.json").write_text(json.dumps({"POST pay": {"201": 2}, "GET x": {"200": 1, "0": 2}}))
    records = read_records(tmp_path)
    assert [r.status for r in records] == [201, 0]
    counts = read_status_counts(tmp_path)
    assert counts["POST pay"] == {"201": 7, "503": 1}
    assert server_errors(counts) == {"POST pay": 1}


def test_reads_locust_stats_csv(tmp_path: Path) -> None:
    csv_file = tmp_path / "locust_stats.csv"
    csv_file.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Requests/s,99%\n"
        "POST,POST /api/v1/payments,100,1,12,50.5,80\n"
        ",Aggregated,120,1,11,60.2,75\n"
    )
    stats = read_locust_stats(csv_file)
    assert stats["POST POST /api/v1/payments"]["99%"] == "80"
    assert stats["Aggregated"]["Requests/s"] == "60.2"


def test_cpu_per_payment() -> None:
    from loadtest.report import cpu_ms_per_payment

    assert cpu_ms_per_payment(ScalingPoint(1, 200.0, 1, 1, 1, 0, instances_cpu=0.5)) == pytest.approx(2.5)
    assert math.isnan(cpu_ms_per_payment(ScalingPoint(1, 0.0, 1, 1, 1, 0, instances_cpu=0.5)))


def _latency_point(rate: float, p99: float, wait: str) -> ScalingPoint:
    return ScalingPoint(1, rate, 20, 100, p99, 0, instances_cpu=0.4, extra={"wait": wait})


def test_latency_bound_level_is_the_fastest_under_the_target() -> None:
    points = [_latency_point(310, 260, "1.0,3.0"), _latency_point(255, 240, "1.5,3.5"), _latency_point(210, 120, "2,4")]
    assert latency_bound_level(points, 250).runs == (points[1],)  # 310/s missed the target by 10 ms
    assert latency_bound_level(points, 300).runs == (points[0],)
    assert latency_bound_level(points, 100) is None


def test_latency_table_sorts_by_rate_and_names_the_answer() -> None:
    points = [_latency_point(310, 260, "1.0,3.0"), _latency_point(255, 240, "1.5,3.5")]
    lines = format_latency_table(points, 250).splitlines()
    assert len(lines) == 5  # header, rule, two rows, the answer
    assert lines[2].split()[:4] == ["1", "1.5,3.5", "1", "255.0"]
    assert lines[2].split()[8] == "yes" and lines[3].split()[8] == "no"
    assert lines[4] == (
        "most payments/s with p99 under 250 ms on 1 instance(s): 255.0 (think time 1.5,3.5 s, p99 240 ms)"
    )
    assert format_latency_table(points, 200).splitlines()[-1] == "no think time kept the payments' p99 under 200 ms"


def test_a_repeated_level_holds_the_target_only_if_every_run_did() -> None:
    points = [
        _latency_point(300, 200, "1.0,3.0"),
        _latency_point(260, 150, "1.5,3.5"),  # round 1
        _latency_point(320, 410, "1.0,3.0"),
        _latency_point(250, 170, "1.5,3.5"),  # round 2
        _latency_point(310, 230, "1.0,3.0"),
        _latency_point(270, 160, "1.5,3.5"),  # round 3
    ]
    levels = latency_levels(points)
    assert [level.wait for level in levels] == ["1.5,3.5", "1.0,3.0"]
    assert [level.payments_per_s for level in levels] == [260, 310]  # medians of three runs
    assert (levels[1].median(lambda p: p.p99_ms), levels[1].worst_p99_ms, levels[1].runs_under(250)) == (230, 410, 2)
    best = latency_bound_level(points, 250)
    assert best is not None and best.wait == "1.5,3.5"  # 1.0,3.0 had its median under 250, one run not
    lines = format_latency_table(points, 250).splitlines()
    assert lines[2].split()[:9] == ["1", "1.5,3.5", "3", "260.0", "20", "100", "160", "170", "yes"]
    assert lines[3].split()[2] == "3" and lines[3].split()[8] == "2/3"
    assert lines[4] == (
        "most payments/s with p99 under 250 ms in every run on 1 instance(s): "
        "median 260.0 (think time 1.5,3.5 s, p99 at most 170 ms)"
    )
    assert format_latency_table(points, 100).splitlines()[-1] == (
        "no think time kept the payments' p99 under 100 ms in every run"
    )


def test_tables_show_how_fast_the_machine_was() -> None:
    point = ScalingPoint(1, 400, 35, 80, 150, 0, probe_ms=7.81)
    table = format_table([point, ScalingPoint(2, 700, 35, 80, 150, 0)])
    header, _, one, two = table.splitlines()
    assert header.endswith("cb lag p99 probe ms  seed/s x seed")
    assert one.split()[-3] == "7.81"  # then seed/s and × seed
    assert two.split()[-3] == "-"
    ceilings = format_ceilings([point], 2000, 4000, db_probe_ms=8.5, framework_probe_ms=9.25)
    assert "2000.0 tps (probe 8.50 ms)" in ceilings and "4000.0 req/s (probe 9.25 ms)" in ceilings
    assert "(probe - ms)" in format_ceilings([point], 2000, 4000)
    # The database ceiling says whether it was PostgreSQL alone or had the services' pipeline beside it.
    assert "SELECT make_payment, services paused): 2000.0 tps" in ceilings
    assert "services RUNNING" in format_ceilings([point], 2000, 4000, db_alone=False)
    runs = [
        ScalingPoint(1, 300, 20, 100, 200, 0, probe_ms=8.26, extra={"wait": "1.0,3.0"}),
        ScalingPoint(1, 320, 20, 100, 210, 0, probe_ms=7.72, extra={"wait": "1.0,3.0"}),
        ScalingPoint(1, 250, 20, 100, 150, 0, probe_ms=9.46, extra={"wait": "1.5,3.5"}),
    ]
    lines = format_latency_table(runs, 250).splitlines()
    assert lines[2].split()[-1] == "9.46" and lines[3].split()[-1] == "7.72–8.26"
