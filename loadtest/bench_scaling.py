"""The seed's experiment redone: payments processed against the number of transaction-service instances.

For each instance count (1, 2, 3, 4 by default) it scales the running platform live (``newbank scale
transactions N``), runs the same locust scenario with the same users, warm-up and duration, measures
payments/s, latency percentiles, the error rate, the CPU of the instances, of locust and of the
whole machine, then checks a sample of the payments through the API (cashback credited exactly once)
and takes their cashback lag. In the same run it measures both ceilings (``ceilings.py``) and prints
payments/s ÷ each. Ends with the table, the efficiency against 1 instance, and the chart (PNG).

Every point of that series saturates the machine (that is how a ceiling is found), so its latency is
the queue in front of the platform. A second series keeps one instance and lengthens the users' think
time (``--latency-waits``): the most payments/s whose p99 stays under ``--latency-p99-ms``, in every one
of ``--latency-repeats`` runs of that level.

    python -m loadtest.bench_scaling --duration 60 --warmup 15      # or: newbank bench scaling
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtest import ceilings, checks, pipeline_drain, setup_data
from loadtest.ingress_log import IngressLog
from loadtest.report import ScalingPoint, format_ceilings, format_latency_table, format_table, seed_per_second
from loadtest.run import LocustRun, format_cpu, platform_target, run_with_cpu, summarise, transaction_pids

POOL_MAX_PER_INSTANCE = int(os.environ.get("NEWBANK_DB_POOL_MAX", "10"))


def newbank_cli() -> str:
    return str(Path(sys.executable).with_name("newbank"))


def scale_transactions(instances: int, timeout_s: float = 180) -> None:
    """Live scale through the runtime's own command, then wait until the count is what was asked."""
    done = subprocess.run(
        [newbank_cli(), "scale", "transactions", str(instances), "--timeout", str(timeout_s)],
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"newbank scale transactions {instances} failed: {done.stdout[-500:]} {done.stderr[-500:]}")


@contextlib.contextmanager
def autoscaling_held(home: Path) -> Iterator[None]:
    """Each point needs a fixed instance count: the operator's local loop (``newbank up`` runs it) would
    otherwise scale under the load. Its policy file is re-read every round, so scaling is switched off
    there for the benchmark, recovery left on, and the file put back afterwards."""
    spec_file = home / "operator.json"
    before = spec_file.read_text() if spec_file.exists() else None
    try:
        spec = json.loads(before) if before else _local_default_spec()
    except ValueError:
        spec = _local_default_spec()
    spec.setdefault("scaling", {})["enabled"] = False
    spec_file.write_text(json.dumps(spec, indent=1))
    time.sleep(1)
    try:
        yield
    finally:
        if before is None:
            spec_file.unlink(missing_ok=True)
        else:
            spec_file.write_text(before)


def _local_default_spec() -> dict[str, Any]:
    try:
        from newbank_operator.local_loop import LOCAL_DEFAULT_SPEC
    except ImportError:
        return {"scaling": {}}
    return json.loads(json.dumps(LOCAL_DEFAULT_SPEC))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="the ingress (default: the platform in $NEWBANK_HOME)")
    parser.add_argument("--instances", default="1,2,3,4", help="comma-separated instance counts")
    parser.add_argument("--duration", type=float, default=60, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=15, help="seconds of load before measuring, per point")
    parser.add_argument("-u", "--users", type=int, default=1000)
    parser.add_argument("-r", "--spawn-rate", type=float, default=200)
    parser.add_argument(
        "--wait",
        default="0.5,1.5",
        help="think time 'min,max' s: 1000 users offer ~1000 req/s, above what 4 instances take",
    )
    parser.add_argument(
        "--ceiling-wait", default="0,0", help="think time of the framework ceiling's users: none, a ceiling saturates"
    )
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    parser.add_argument("--locust-cpus", default="", help="pin locust (and pgbench) with taskset, e.g. '1'")
    parser.add_argument(
        "--locust-cpu-group",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run locust in a CPU group that gets its CPU when it needs it (default: on where cgroup v1 is writable)",
    )
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help="reuse a data.json from an earlier setup")
    parser.add_argument("--merchants", type=int, default=24)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--check-sample", type=int, default=1000, help="payments checked per point")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=180,
        help="seconds the checks wait for cashback to catch up (it also empties the backlog before the next point)",
    )
    parser.add_argument("--no-ceilings", action="store_true")
    parser.add_argument(
        "--pgbench-clients",
        type=int,
        default=None,
        help="default: the database connections of the largest point (pool size × instances)",
    )
    parser.add_argument("--keep-scale", action="store_true", help="leave the last instance count running")
    parser.add_argument(
        "--latency-waits",
        default="1.5,3.5;1.0,3.0;0.8,2.4;0.7,2.1",
        help="think times 'min,max;min,max…' of the below-saturation series ('' skips it)",
    )
    parser.add_argument("--latency-instances", type=int, default=1, help="instances of the below-saturation series")
    parser.add_argument("--latency-p99-ms", type=float, default=250.0, help="the p99 target of that series")
    parser.add_argument(
        "--latency-repeats",
        type=int,
        default=3,
        help="runs of each think time, in alternated rounds; a level holds the target only if "
        "every run did (identical runs scatter on a busy machine)",
    )


def measure_point(
    args: argparse.Namespace,
    host: str,
    home: Path,
    data_file: Path,
    data: dict[str, Any],
    admin: str,
    instances: int,
    folder: Path,
    wait: str | None = None,
) -> ScalingPoint:
    wait = wait or args.wait
    scale_transactions(instances)
    time.sleep(2)  # HAProxy's health checks mark the new servers up (inter 1 s, rise 1)
    pids = transaction_pids(home)
    run = LocustRun(
        folder,
        host,
        data_file,
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time_s=args.warmup + args.duration,
        processes=args.processes,
        wait=wait,
        cpus=args.locust_cpus,
        cpu_group=args.locust_cpu_group,
    )
    ingress = IngressLog.for_platform(home, host)
    _, cpu, start, probe_ms = run_with_cpu(
        run, pids, warmup_s=args.warmup, progress=sys.stdout.isatty(), home=home, ingress=ingress
    )
    (folder / "load_generator.txt").write_text(run.group.describe() + "\n")
    summary = summarise(folder, start, start + args.duration)
    ingress_times = ingress.payment_times() or {}
    report = asyncio.run(
        checks.run_checks(host, admin, folder, data, sample=args.check_sample, settle_timeout_s=args.settle_timeout)
    )
    (folder / "checks.json").write_text(
        json.dumps(
            {
                "ok": report.ok,
                "results": [r.__dict__ for r in report.results],
                "cashback_lag_ms": report.cashback_lag_ms,
            },
            indent=1,
        )
    )
    lag = report.cashback_lag_ms.get("p99", float("nan"))
    point = ScalingPoint(
        instances=instances,
        payments_per_s=float(summary["payments_per_s"]),
        p50_ms=float(summary["p50_ms"]),
        p95_ms=float(summary["p95_ms"]),
        p99_ms=float(summary["p99_ms"]),
        error_rate=float(summary["error_rate"]),
        payments=int(summary["payments"]),
        instances_cpu=cpu.get("instances", float("nan")),
        locust_cpu=cpu.get("locust", float("nan")),
        machine_cpu=cpu.get("machine", float("nan")),
        cashback_lag_p99_ms=lag,
        probe_ms=probe_ms,
        ingress_p99_ms=ingress_times.get("p99_ms", float("nan")),
        foreign_cpu=cpu.get("machine", float("nan")) - sum(v for k, v in cpu.items() if k != "machine"),
        extra={
            "wait": wait,
            "server_errors": summary["server_errors"],
            "pids": pids,
            "cpu": cpu,
            "checks": [r.__dict__ for r in report.results],
            "ingress": ingress_times,
        },
    )
    failed = [r.name for r in report.results if not r.ok and not r.detail.startswith("skipped")]
    print(
        f"  {instances} instance(s), think {wait} s: {point.payments_per_s:.1f} payments/s, "
        f"p99 {point.p99_ms:.0f} ms (at the ingress {point.ingress_p99_ms:.0f}), "
        f"errors {point.error_rate * 100:.2f}%, instances {point.instances_cpu:.2f} cores, "
        f"locust {point.locust_cpu:.2f}, machine {point.machine_cpu:.2f}, probe {point.probe_ms:.2f} ms; checks "
        f"{'ok' if not failed else 'FAILED: ' + ', '.join(failed)}\n    CPU (cores): {format_cpu(cpu)}",
        flush=True,
    )
    return point


def run(args: argparse.Namespace) -> int:
    host, home = platform_target()
    host = args.host or host
    os.environ.setdefault("NEWBANK_HOME", str(home))
    counts = [int(n) for n in args.instances.split(",")]
    results = (args.results or Path("results") / f"bench-scaling-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    results.mkdir(parents=True, exist_ok=True)
    admin = setup_data.admin_token(home)
    data_file = args.data.resolve() if args.data else results / "data.json"
    if args.data is None:
        print(f"setup: {args.merchants} merchants, {args.customers} customers through {host} ...", flush=True)
        data_file.write_text(
            json.dumps(asyncio.run(setup_data.setup(host, admin, args.merchants, args.customers)), ensure_ascii=False)
        )
    data = json.loads(data_file.read_text())
    before = len(transaction_pids(home))
    where = "in a CPU group of its own" if args.locust_cpu_group else "among the machine's processes"
    print(
        f"scaling benchmark: {counts} instances, {args.users} users, {args.warmup:.0f}s warm-up + "
        f"{args.duration:.0f}s measured per point, think time {args.wait} s, "
        f"locust {where} "
        f"→ {results}",
        flush=True,
    )
    latency_waits = [w.strip() for w in args.latency_waits.split(";") if w.strip()]
    points: list[ScalingPoint] = []
    latency_points: list[ScalingPoint] = []
    with autoscaling_held(home):
        try:
            for n in counts:
                points.append(measure_point(args, host, home, data_file, data, admin, n, results / f"point-{n}"))
            if latency_waits:
                print(
                    f"below saturation: {args.latency_instances} instance(s), think times {latency_waits} s, "
                    f"{args.latency_repeats} run(s) each",
                    flush=True,
                )
            for run_no in range(1, args.latency_repeats + 1):  # rounds, so drift spreads over every level
                for i, wait in enumerate(latency_waits, 1):
                    name = f"latency-{i}" if args.latency_repeats == 1 else f"latency-{i}-run{run_no}"
                    point = measure_point(
                        args, host, home, data_file, data, admin, args.latency_instances, results / name, wait=wait
                    )
                    point.extra["run"] = run_no
                    latency_points.append(point)
        finally:
            if not args.keep_scale and before:
                scale_transactions(before)

    db_tps = framework_rps = None
    db_alone = True
    drain_line = ""
    db_probe_ms = framework_probe_ms = math.nan
    ceiling_notes: dict[str, Any] = {}
    if not args.no_ceilings:
        clients = args.pgbench_clients or POOL_MAX_PER_INSTANCE * max(counts)
        dsn = checks.bank_database_url()
        if dsn:
            print(
                f"database ceiling: pgbench, {clients} clients, {args.duration:.0f}s, services paused ...", flush=True
            )
            db = ceilings.database_ceiling(
                dsn,
                data,
                results / "ceiling-db",
                home,
                clients=clients,
                seconds=int(args.duration),
                cpus=args.locust_cpus,
            )
            db_tps, db_probe_ms, db_alone = db.tps, db.probe_ms, db.paused > 0
            if not db_alone:
                print("database ceiling: no service process of a local platform to pause: it includes them", flush=True)
            if db_tps is None:
                errors = [line for line in db.output.splitlines() if "error" in line.lower()][-3:]
                print("database ceiling: no measurement —", " | ".join(errors) or db.output[-300:], flush=True)
            if db.drain is not None:
                drain_line = pipeline_drain.format_drain(db.drain)
                print(drain_line, flush=True)
            ceiling_notes |= {"db_services_paused": db.paused, "pipeline": db.drain.as_json() if db.drain else None}
        ceiling_notes |= {"pgbench_clients": clients, "db_probe_ms": db_probe_ms}
        print("framework ceiling: trivial FastAPI in one limited uvicorn ...", flush=True)
        stats, cpu, limited, framework_probe_ms = ceilings.framework_ceiling(
            results / "ceiling-framework",
            users=args.users,
            seconds=args.duration,
            warmup_s=args.warmup,
            wait=args.ceiling_wait,
            spawn_rate=args.spawn_rate,
            processes=args.processes,
            cpus=args.locust_cpus,
        )
        framework_rps = stats.payments_per_s
        ceiling_notes |= {
            "framework_limits": limited,
            "framework_p99_ms": stats.p99_ms,
            "framework_cpu": cpu,
            "framework_probe_ms": framework_probe_ms,
        }

    from loadtest.chart import draw_scaling_chart  # matplotlib: only when there is a chart to draw

    sections = [
        format_table(points),
        format_ceilings(
            points,
            db_tps,
            framework_rps,
            db_probe_ms=db_probe_ms,
            framework_probe_ms=framework_probe_ms,
            db_alone=db_alone,
        ),
    ]
    if drain_line:
        sections[-1] += "\n" + drain_line
    if latency_points:
        sections.append("below saturation\n" + format_latency_table(latency_points, args.latency_p99_ms))
    text = "\n\n".join(sections)
    chart = draw_scaling_chart(
        points,
        results / "scaling.png",
        db_ceiling_tps=db_tps,
        framework_ceiling_rps=framework_rps,
        users=args.users,
        title_note=f"{args.warmup:.0f}s warm-up + {args.duration:.0f}s measured per point; seed: 4 min per point",
    )
    (results / "table.txt").write_text(text + "\n")
    (results / "bench.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items() if k != "handler"},
                "points": [p.as_json() for p in points],
                "seed_per_second": seed_per_second(),
                "latency_points": [p.as_json() for p in latency_points],
                "latency_p99_target_ms": args.latency_p99_ms,
                "db_ceiling_tps": db_tps,
                "framework_ceiling_rps": framework_rps,
                "ceilings": ceiling_notes,
            },
            indent=1,
            default=str,
        )
    )
    print("\n" + text)
    print(f"\nchart: {chart}\ntable: {results / 'table.txt'}\nraw:   {results / 'bench.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="newbank bench scaling", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
