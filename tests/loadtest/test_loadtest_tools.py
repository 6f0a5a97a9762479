"""The pieces around locust: its command line, pgbench's scripts and output, py-spy's stacks, /proc CPU."""

from __future__ import annotations

import os
from pathlib import Path

from loadtest.ceilings import parse_pgbench_tps, pgbench_scripts
from loadtest.cpu import CpuWindow, descendants, process_cpu_seconds
from loadtest.profile_instance import short_frame, top_functions
from loadtest.run import LocustRun


def test_locust_command_is_headless_with_reports_and_pinning(tmp_path: Path) -> None:
    run = LocustRun(tmp_path, "http://127.0.0.1:9", users=1000, run_time_s=75, processes=2, cpus="1")
    argv = run.command()
    assert argv[:3] == ["taskset", "-c", "1"]
    assert "--headless" in argv and argv[argv.index("-t") + 1] == "75s"
    assert argv[argv.index("-u") + 1] == "1000"
    assert argv[argv.index("--processes") + 1] == "2"
    assert argv[-3:] == ["MerchantUser", "CustomerUser", "VisitorUser"]
    web = LocustRun(tmp_path, "http://x", web_ui=True).command()
    assert "--headless" not in web and "taskset" not in web


def test_pgbench_scripts_are_one_make_payment_call(tmp_path: Path) -> None:
    data = {
        "merchants": [{"id": "11111111-1111-1111-1111-111111111111", "currency": "JPY"}],
        "accounts": [{"id": "22222222-2222-2222-2222-222222222222"}, {"id": "33333333-3333-3333-3333-333333333333"}],
    }
    scripts = pgbench_scripts(data, tmp_path, pairs=4)
    assert len(scripts) == 4
    text = scripts[1].read_text()
    assert text.count("SELECT") == 1
    assert "make_payment('merchant' || chr(58) || '11111111-1111-1111-1111-111111111111', gen_random_uuid()" in text
    assert text.count(":") == text.count("::") * 2 + 1  # casts and the one variable: no colon in a literal
    assert ":amount::bigint, 'JPY'" in text  # typed: with -M prepared an untyped $1 cannot be resolved


def test_pgbench_tps_is_parsed() -> None:
    output = "latency average = 8.1 ms\ntps = 2466.512345 (without initial connection time)\n"
    assert parse_pgbench_tps(output) == 2466.512345
    assert parse_pgbench_tps("connection refused") is None


def test_an_aborted_pgbench_run_is_no_measurement() -> None:
    aborted = (
        "number of transactions actually processed: 5\ntps = 185.921987 (without initial connection time)\n"
        "pgbench: error: client 0 script 4 aborted in command 1 query 0: ERROR:  prepared statement\n"
        "pgbench: error: Run was aborted; the above results are incomplete.\n"
    )
    assert parse_pgbench_tps(aborted) is None
    nothing = "number of transactions actually processed: 0\ntps = 0.000000 (without initial connection time)\n"
    assert parse_pgbench_tps(nothing) is None


def test_top_functions_from_collapsed_stacks() -> None:
    collapsed = "\n".join(
        [
            "main (app.py:1);handle (/x/site-packages/fastapi/routing.py:10);"
            "execute (/x/site-packages/asyncpg/c.py:5) 6",
            "main (app.py:1);handle (/x/site-packages/fastapi/routing.py:11) 2",
            "Thread._bootstrap (threading.py:995);Queue.get (queue.py:171);Condition.wait (threading.py:320) 50",
            "not a stack line",
        ]
    )
    total, own, inclusive = top_functions(collapsed)
    assert total == 8  # the parked thread-pool worker is idle, not CPU
    assert own[0] == ("execute (asyncpg/c.py)", 75.0)
    assert dict(inclusive)["handle (fastapi/routing.py)"] == 100.0
    assert short_frame("f (/usr/lib/python3.11/asyncio/events.py:80)") == "f (asyncio/events.py)"


def test_cpu_window_sees_this_process() -> None:
    pid = os.getpid()
    assert pid in descendants(1) or pid in descendants(os.getppid())
    assert process_cpu_seconds(pid) > 0
    window = CpuWindow({"me": lambda: [pid]})
    window.start()
    sum(i * i for i in range(300_000))
    used = window.stop()
    assert used["me"] >= 0 and used["machine"] >= 0


def test_profile_categories_share_of_samples() -> None:
    from loadtest.profile_instance import categories

    collapsed = "\n".join(
        [
            "a (x.py:1);_call_with_retry (newbank/transactions/service.py:31);fetchval (asyncpg/c.py:1) 3",
            "a (x.py:1);release (asyncpg/pool.py:2);Connection.reset (asyncpg/connection.py:3) 1",
        ]
    )
    shares = dict(categories(collapsed))
    assert shares["payment SQL call (make_payment, pool.fetchval)"] == 75.0
    assert shares["asyncpg pool reset on release (an extra round trip per request)"] == 25.0


def test_autoscaling_is_held_during_the_benchmark_and_restored(tmp_path: Path) -> None:
    import json

    from loadtest.bench_scaling import autoscaling_held

    with autoscaling_held(tmp_path):
        held = json.loads((tmp_path / "operator.json").read_text())
        assert held["scaling"]["enabled"] is False
    assert not (tmp_path / "operator.json").exists()

    (tmp_path / "operator.json").write_text('{"scaling": {"minReplicas": 3}}')
    with autoscaling_held(tmp_path):
        held = json.loads((tmp_path / "operator.json").read_text())
        assert held["scaling"] == {"minReplicas": 3, "enabled": False}
    assert json.loads((tmp_path / "operator.json").read_text()) == {"scaling": {"minReplicas": 3}}
