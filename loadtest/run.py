"""Run locust against the platform and read what it saw: shared by ``newbank loadtest``, the scaling
benchmark and the profiler, so that all three drive the same scenario the same way.

    python -m loadtest.run --users 1000 --duration 60        # setup, load, checks, summary
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import checks, setup_data
from loadtest.cpu import CpuWindow, descendants
from loadtest.ingress_log import IngressLog, format_times
from loadtest.loadgen_cgroup import LoadGeneratorGroup
from loadtest.report import read_locust_stats, read_records, read_status_counts, server_errors, window_stats
from loadtest.speed_probe import SpeedProbe

LOADTEST_DIR = Path(__file__).resolve().parent
LOCUSTFILE = LOADTEST_DIR / "locustfile.py"
PLATFORM_USERS = ["MerchantUser", "CustomerUser", "VisitorUser"]


def locust_executable() -> str:
    beside = Path(sys.executable).with_name("locust")
    return str(beside) if beside.exists() else (shutil.which("locust") or "locust")


def platform_target() -> tuple[str, Path]:
    """The ingress URL and state folder of the platform ``newbank up`` started for this shell."""
    home = Path(os.environ.get("NEWBANK_HOME") or LOADTEST_DIR.parent / ".newbank").resolve()
    port = os.environ.get("NEWBANK_PORT", "8080")
    try:
        from newbank.runtime.layout import Layout

        layout = Layout.load(home)
        if layout is not None:
            port = str(layout.ingress_port)
    except ImportError:
        pass
    return f"http://127.0.0.1:{port}", home


def service_pids(home: Path, *, transactions: bool | None = None) -> list[int]:
    """PIDs of the platform's running service processes in ``home``: all of them, only the
    transaction-service instances (``transactions=True``), or all but those (``False``)."""
    try:
        rows = json.loads((home / "instances.json").read_text())
    except (OSError, ValueError):
        return []
    return [
        int(r["pid"])
        for r in rows
        if r.get("pid") and (transactions is None or (r.get("service") == "transactions") == transactions)
    ]


def transaction_pids(home: Path) -> list[int]:
    """PIDs of the running transaction-service instances of the platform in ``home``."""
    return service_pids(home, transactions=True)


def platform_pid_groups(home: Path) -> dict[str, Callable[[], list[int]]]:
    """The platform's processes by component, so a point says where the machine's CPU went.

    Whatever the machine used beyond these and locust belongs to something else (another platform,
    a test suite): on a shared 2-core machine that is the first thing to know about a figure.
    """
    groups: dict[str, Callable[[], list[int]]] = {}

    groups["other services"] = lambda: service_pids(home, transactions=False)
    try:
        from newbank.runtime.layout import Layout

        layout = Layout.load(home)
    except ImportError:
        layout = None
    if layout is not None:
        cluster, rabbit, haproxy = layout.pg_cluster(), layout.rabbitmq(), layout.haproxy()
        groups["postgres"] = lambda: [
            p for n in cluster.nodes if (pid := _value(n.postmaster_pid)) for p in descendants(pid)
        ]
        groups["rabbitmq"] = lambda: descendants(pid) if (pid := _value(rabbit.pid)) else []
        groups["haproxy"] = lambda: [pid] if (pid := _read_pid(haproxy.root / "haproxy.pid")) else []
    return groups


def _value(attribute: object) -> int | None:
    """A PID whether the runtime exposes it as a property or as a method."""
    value = attribute() if callable(attribute) else attribute
    return int(value) if value else None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class LocustRun:
    """One headless locust run (or the web UI on request), reports into ``results``."""

    results: Path
    host: str
    data: Path | None = None
    users: int = 1000
    spawn_rate: float = 200
    run_time_s: float = 60
    processes: int = 1
    wait: str = "1.5,3.5"
    mode: str = "platform"
    cpus: str = ""  # taskset CPU list for locust, e.g. "1"; empty = not pinned
    # Locust in a CPU group of its own that gets its CPU when it needs it (loadtest/loadgen_cgroup.py).
    cpu_group: bool = True
    web_ui: bool = False
    user_classes: list[str] = field(default_factory=lambda: list(PLATFORM_USERS))
    group: LoadGeneratorGroup = field(default_factory=lambda: LoadGeneratorGroup(None, "not started"))

    def command(self) -> list[str]:
        argv = [
            locust_executable(), "-f", str(LOCUSTFILE), "--host", self.host,
            "-u", str(self.users), "-r", str(self.spawn_rate),
            "--csv", str(self.results / "locust"), "--html", str(self.results / "locust.html"),
            "--stop-timeout", "10", "--loglevel", "WARNING", "--exit-code-on-error", "0",
        ]  # fmt: skip
        if not self.web_ui:
            argv += ["--headless", "-t", f"{int(self.run_time_s)}s", "--only-summary"]
        if self.processes > 1:
            argv += ["--processes", str(self.processes)]
        argv += self.user_classes
        return (["taskset", "-c", self.cpus] if self.cpus else []) + argv

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(LOADTEST_RESULTS=str(self.results), LOADTEST_WAIT=self.wait, LOADTEST_MODE=self.mode)
        if self.data:
            env["LOADTEST_DATA"] = str(self.data)
        return env

    def start(self) -> subprocess.Popen[bytes]:
        self.results.mkdir(parents=True, exist_ok=True)
        for stale in [*self.results.glob("payments-*.jsonl"), *self.results.glob("statuses-*.json")]:
            stale.unlink()
        log = (self.results / "locust.log").open("ab")
        self.group = LoadGeneratorGroup.create() if self.cpu_group else LoadGeneratorGroup(None, "not asked for")
        self.started_at = time.time()
        return subprocess.Popen(
            self.group.wrap(self.command()),
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=LOADTEST_DIR.parent,
        )

    def finish(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for locust to exit, then remove its CPU group; its exit code."""
        try:
            return proc.wait()
        finally:
            self.group.remove()


def run_with_cpu(
    run: LocustRun,
    instance_pids: list[int] | None = None,
    warmup_s: float = 0,
    progress: bool = True,
    home: Path | None = None,
    ingress: IngressLog | None = None,
) -> tuple[int, dict[str, float], float, float]:
    """Run locust to its end, measuring CPU between the end of warm-up and the end of the load, and how fast
    the machine was meanwhile (``loadtest.speed_probe``); with ``ingress``, HAProxy logs every request of
    that window.

    Returns (exit code, cores used per group, epoch second at which the measured window started, the probe's
    median CPU ms over the window).
    """
    proc = run.start()
    try:
        used, window_start, probe_ms = _measure(run, proc, instance_pids, warmup_s, progress, home, ingress)
        _sleep_while(proc, 3600, run.started_at + run.run_time_s, progress)
    finally:
        if proc.poll() is None:  # interrupted: locust must not outlive the run
            proc.terminate()
        run.finish(proc)
    if progress:
        print("\r" + " " * 40 + "\r", end="", flush=True)
    return proc.returncode or 0, used, window_start, probe_ms


def _measure(
    run: LocustRun,
    proc: subprocess.Popen[bytes],
    instance_pids: list[int] | None,
    warmup_s: float,
    progress: bool,
    home: Path | None,
    ingress: IngressLog | None,
) -> tuple[dict[str, float], float, float]:
    """The measured window of :func:`run_with_cpu`: (cores per group, its start, the probe's median ms)."""
    probe = SpeedProbe()
    groups = {"locust": lambda: descendants(proc.pid), "instances": lambda: list(instance_pids or [])}
    if home is not None:  # instances started meanwhile (the operator scaling up) count too
        groups |= platform_pid_groups(home) | {"instances": lambda: transaction_pids(home)}
    groups["probe"] = lambda: [probe.pid] if probe.pid else []
    window = CpuWindow(groups)
    deadline = run.started_at + run.run_time_s
    _sleep_while(proc, min(warmup_s, run.run_time_s), deadline, progress)
    window_start = time.time()
    probe.start()
    if ingress is not None:
        ingress.start(window_start)
    try:
        window.start()
        # CPU is read just before locust stops its users, so the shutdown stays out of the figures.
        _sleep_while(proc, deadline - 0.5 - time.time(), deadline, progress)
        used = window.stop()
    finally:
        probe_ms = probe.stop()
        if ingress is not None:
            ingress.stop(time.time())
    return used, window_start, probe_ms


def _sleep_while(proc: subprocess.Popen[bytes], seconds: float, deadline: float, progress: bool) -> None:
    until = time.time() + max(seconds, 0)
    while proc.poll() is None and time.time() < until:
        if progress:
            print(f"\r  load running, {max(0, deadline - time.time()):4.0f}s left", end="", flush=True)
        time.sleep(min(0.5, max(until - time.time(), 0.01)))


def summarise(results: Path, window_start: float, window_end: float) -> dict[str, Any]:
    """What one run did, from the records of its locust processes and locust's own CSV."""
    stats = window_stats(read_records(results), window_start, window_end)
    statuses = read_status_counts(results)
    total = (
        read_locust_stats(results / "locust_stats.csv").get("Aggregated", {})
        if (results / "locust_stats.csv").exists()
        else {}
    )
    return {
        "payments": stats.payments,
        "failed_payments": stats.failed,
        "payments_per_s": stats.payments_per_s,
        "p50_ms": stats.p50_ms,
        "p95_ms": stats.p95_ms,
        "p99_ms": stats.p99_ms,
        "error_rate": stats.error_rate,
        "server_errors": server_errors(statuses),
        "requests": int(total.get("Request Count", 0) or 0),
        "requests_per_s": float(total.get("Requests/s", 0) or 0),
        "request_failures": int(total.get("Failure Count", 0) or 0),
        "statuses": statuses,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    host, _ = platform_target()
    parser.add_argument("--host", default=host, help=f"the ingress (default {host})")
    parser.add_argument("-u", "--users", type=int, default=1000)
    parser.add_argument("-r", "--spawn-rate", type=float, default=100)
    parser.add_argument("-t", "--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    parser.add_argument("--wait", default="1.5,3.5", help="think time 'min,max' seconds per user")
    parser.add_argument("--locust-cpus", default="", help="pin locust with taskset, e.g. '1'")
    parser.add_argument(
        "--locust-cpu-group",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run locust in a CPU group that gets its CPU when it needs it (default: on where cgroup v1 is writable)",
    )
    parser.add_argument("--web", action="store_true", help="the web UI instead of headless")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help="reuse a data.json from an earlier setup")
    parser.add_argument("--merchants", type=int, default=24)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--no-checks", action="store_true")
    parser.add_argument("--check-sample", type=int, default=None, help="check only this many payments")
    parser.add_argument("--settle-timeout", type=float, default=120, help="seconds to wait for cashback to settle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="newbank loadtest", description=run.__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Set the data up through the API, run locust, check what it did, print a one-screen summary."""
    _, home = platform_target()
    results = (args.results or Path("results") / f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    results.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NEWBANK_HOME", str(home))
    admin = setup_data.admin_token(home)
    data_file = args.data or results / "data.json"
    if args.data is None:
        print(f"setup: {args.merchants} merchants, {args.customers} customers through {args.host} ...", flush=True)
        data = asyncio.run(setup_data.setup(args.host, admin, args.merchants, args.customers))
        data_file.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    data = json.loads(data_file.read_text())
    locust_run = LocustRun(
        results,
        args.host,
        data_file.resolve(),
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time_s=args.duration,
        processes=args.processes,
        wait=args.wait,
        cpus=args.locust_cpus,
        cpu_group=args.locust_cpu_group,
        web_ui=args.web,
    )
    print(f"load: {args.users} users for {args.duration:.0f}s → {results}", flush=True)
    instances_before = transaction_pids(home)
    ingress = IngressLog.for_platform(home, args.host)
    code, cpu, _, probe_ms = run_with_cpu(
        locust_run, instances_before, progress=sys.stdout.isatty(), home=home, ingress=ingress
    )
    summary = summarise(results, locust_run.started_at, locust_run.started_at + args.duration)
    summary["ingress"] = ingress.payment_times()
    # The operator's loop may scale the transaction service under the load: say so.
    summary["cpu"] = cpu
    summary["probe_ms"] = probe_ms
    summary["load_generator"] = locust_run.group.describe()
    summary["transaction_instances"] = {"start": len(instances_before), "end": len(transaction_pids(home))}
    ok = code == 0
    if not args.no_checks:
        report = asyncio.run(
            checks.run_checks(
                args.host, admin, results, data, sample=args.check_sample, settle_timeout_s=args.settle_timeout
            )
        )
        summary["checks"] = {
            "ok": report.ok,
            "results": [r.__dict__ for r in report.results],
            "cashback_lag_ms": report.cashback_lag_ms,
        }
        ok = ok and report.ok
    (results / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(format_summary(summary, results))
    if not args.no_checks:
        print("checks:\n" + report.summary())
    return 0 if ok else 1


def format_cpu(cpu: dict[str, float]) -> str:
    """Cores per component, and what the machine used beyond them (other work on the same cores)."""
    known = sum(v for k, v in cpu.items() if k != "machine")
    parts = [f"{name} {value:.2f}" for name, value in cpu.items() if name != "machine"]
    machine = cpu.get("machine", 0.0)
    return ", ".join(parts) + f"; machine {machine:.2f}, of which not this platform nor locust {machine - known:.2f}"


def format_summary(summary: dict, results: Path) -> str:
    cpu = summary.get("cpu") or {}
    return "\n".join(
        [
            f"payments: {summary['payments']} ok, {summary['failed_payments']} failed "
            f"({summary['error_rate'] * 100:.2f}%), {summary['payments_per_s']:.1f}/s",
            f"payment latency: p50 {summary['p50_ms']:.0f} ms, p95 {summary['p95_ms']:.0f} ms, "
            f"p99 {summary['p99_ms']:.0f} ms",
            format_times(summary.get("ingress")),
            f"all requests: {summary['requests']} ({summary['requests_per_s']:.1f}/s), "
            f"{summary['request_failures']} failed",
            "CPU (cores): " + format_cpu(cpu),
            f"machine speed: the probe's fixed work took {summary.get('probe_ms', float('nan')):.2f} ms of CPU "
            "(median; lower = faster; compare runs only at similar values)",
            "transaction instances: {start} at the start, {end} at the end".format(**summary["transaction_instances"]),
            "load generator: " + summary.get("load_generator", "?"),
            f"reports: {results}/locust.html, {results}/locust_stats.csv, {results}/summary.json",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
