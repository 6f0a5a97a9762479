"""CI smoke of the load test and the scaling benchmark: a few users for a few seconds, against the
session's own ``newbank up`` (its own state folder and ports). It checks that they still run end to end
and that the after-run checks pass — never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest.ceilings import PROCESSED
from loadtest.run import service_pids
from loadtest.services_paused import process_state
from newbank.runtime import cgroups

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _speed_probes_running() -> list[int]:
    running = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"loadtest.speed_probe" in argv:
            running.append(int(entry.name))
    return running


def _loadgen_groups() -> list[Path]:
    return sorted((cgroups.CGROUP_ROOT / "cpu").glob("newbank-loadgen-*"))


def _ok(result: Any) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_loadtest_runs_and_its_checks_pass(newbank_platform: Any, tmp_path: Path) -> None:
    results = tmp_path / "loadtest"
    result = newbank_platform.cli(
        "loadtest", "-u", "8", "-r", "8", "-t", "6", "--wait", "0.1,0.3",
        "--merchants", "5", "--customers", "4", "--results", str(results), timeout_s=240,
    )  # fmt: skip
    _ok(result)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["payments"] > 0
    assert summary["server_errors"] == {}
    assert summary["probe_ms"] > 0 and "probe" in summary["cpu"]  # how fast the machine was, and what it cost
    # HAProxy's timers of the same payments, and its access log switched off again afterwards.
    ingress = summary["ingress"]
    assert ingress["n"] > 0 and ingress["p99_ms"] > 0 and ingress["queue_p99_ms"] >= 0
    assert "at the ingress (HAProxy's timers" in result.stdout
    haproxy = newbank_platform.layout.haproxy()
    assert "access_log off" in haproxy.runtime(f"show map {haproxy.access_log_map}")
    checks = {c["name"]: c for c in summary["checks"]["results"]}
    for name in (
        "no 5xx",
        "every 201 payment exists",
        "cashback settled",
        "cashback credited exactly once",
        "ledger verifies",
    ):
        assert checks[name]["ok"], checks[name]
    assert (results / "locust.html").exists()
    assert (results / "locust_stats.csv").exists()
    assert not _speed_probes_running()
    # Locust ran in a CPU group of its own, gone with it (loadtest/loadgen_cgroup.py).
    expected = "weighing 8192" if cgroups.available() is None else "not in a CPU group of its own"
    assert expected in summary["load_generator"] and "load generator: " in result.stdout
    assert not _loadgen_groups()
    data = json.loads((results / "data.json").read_text())
    assert {m["currency"] for m in data["merchants"]} >= {"EUR", "USD", "GBP", "JPY"}


def test_bench_scaling_runs_two_points_and_both_ceilings(newbank_platform: Any, tmp_path: Path) -> None:
    results = tmp_path / "bench"
    result = newbank_platform.cli(
        "bench", "scaling", "--instances", "1,2", "--duration", "4", "--warmup", "2", "-u", "8", "-r", "8",
        "--wait", "0.1,0.3", "--merchants", "5", "--customers", "4", "--check-sample", "50",
        "--pgbench-clients", "2", "--latency-waits", "0.2,0.4", "--latency-repeats", "2", "--results", str(results),
        timeout_s=360,
    )  # fmt: skip
    _ok(result)
    bench = json.loads((results / "bench.json").read_text())
    assert [p["instances"] for p in bench["points"]] == [1, 2]
    assert all(p["payments"] > 0 for p in bench["points"])
    assert bench["db_ceiling_tps"] and bench["framework_ceiling_rps"]
    assert all(p["probe_ms"] > 0 for p in bench["points"])
    assert bench["ceilings"]["db_probe_ms"] > 0 and bench["ceilings"]["framework_probe_ms"] > 0
    assert (results / "scaling.png").read_bytes().startswith(b"\x89PNG")
    table = (results / "table.txt").read_text()
    assert "÷ db" in table
    # The below-saturation series: one think time asked, twice, on 1 instance.
    latency = bench["latency_points"]
    assert [(p["instances"], p["extra"]["wait"], p["extra"]["run"]) for p in latency] == [
        (1, "0.2,0.4", 1),
        (1, "0.2,0.4", 2),
    ]
    assert all(p["payments"] > 0 and p["probe_ms"] > 0 for p in latency)
    assert all(p["extra"]["ingress"]["n"] > 0 and p["ingress_p99_ms"] >= 0 for p in [*bench["points"], *latency])
    assert "below saturation" in table and "p99<250" in table
    assert (results / "latency-1-run2" / "checks.json").exists()
    assert not _speed_probes_running()  # every probe was stopped by its PID
    assert not _loadgen_groups()  # nor a CPU group of locust's, one per run
    assert "weighing 8192" in (results / "point-1" / "load_generator.txt").read_text() or cgroups.available()
    # The framework ceiling's uvicorn ran in its own cgroup: gone with it, not left behind one per run.
    for controller in ("cpu", "memory"):
        assert not (cgroups.CGROUP_ROOT / controller / cgroups.group_name(results / "ceiling-framework")).exists()
    # The database ceiling ran with the services paused (PostgreSQL alone); then the pipeline settled
    # the cashback of every payment it made, and no service was left stopped.
    assert bench["ceilings"]["db_services_paused"] >= 4
    processed = PROCESSED.search((results / "ceiling-db" / "pgbench.log").read_text())
    pipeline = bench["ceilings"]["pipeline"]
    assert processed and pipeline["settled"] and 0 < pipeline["payments"] <= int(processed.group(1))
    assert f"pipeline: the ceiling's {pipeline['payments']} payments' cashback settled" in table
    services = service_pids(newbank_platform.home)
    assert len(services) >= 4 and not [pid for pid in services if process_state(pid) in ("T", None)]


def test_bench_introspection_runs_both_modes(newbank_platform: Any) -> None:
    """The burst benchmark against the session's platform: twenty new keys each way, nothing timed."""
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_introspection", "--keys", "20", "--rounds", "1",
         "--ingress", f"http://127.0.0.1:{newbank_platform.env['NEWBANK_PORT']}"],
        env=newbank_platform.env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    _ok(result)
    lines = result.stdout.splitlines()
    per_key = next(line for line in lines if line.startswith("per-key   20 keys"))
    batched = next(line for line in lines if line.startswith("batched   20 keys"))
    assert "   20 requests     0 × 503" in per_key, per_key
    assert "    1 requests     0 × 503" in batched, batched
    assert any(line.startswith("per-key ÷ batched: ") for line in lines), result.stdout
