"""The two ceilings the scaling benchmark divides by, measured in the same run on the same machine.

- database: ``pgbench`` with custom scripts doing exactly the SQL of one payment — ``SELECT
  make_payment(...)``, one server-side function call — at the platform's database concurrency, against
  the same PostgreSQL (primary with its synchronous standby), with the services paused so that it is
  PostgreSQL alone; when they run again, the backlog of its payments' events says what the asynchronous
  pipeline costs per payment (``pipeline_drain.py``);
- framework: a trivial FastAPI endpoint (``trivial_app.py``) in one uvicorn process inside a cgroup
  with the transaction service's limits (50% CPU / 300 MB), under the same locust users.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import pipeline_drain
from loadtest.report import WindowStats, read_records, window_stats
from loadtest.run import LocustRun, platform_pid_groups, run_with_cpu, service_pids, transaction_pids
from loadtest.services_paused import processes_paused
from loadtest.speed_probe import SpeedProbe

TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
ABORTED = "Run was aborted"
SCRIPT_PAIRS = 64  # (merchant, account) pairs: enough spread that row locks look like the real traffic's


def pgbench_scripts(data: dict[str, Any], folder: Path, pairs: int = SCRIPT_PAIRS) -> list[Path]:
    """One script per (merchant, account) pair; pgbench picks one at random for each transaction.

    pgbench variables are numbers only, so the uuids are written into the scripts rather than drawn. No
    colon may appear in a literal: pgbench reads ``'merchant:1f…'`` as a variable ``:1f…`` and the
    prepared statement then has a parameter it cannot type (``chr(58)`` spells the scope's colon).
    """
    folder.mkdir(parents=True, exist_ok=True)
    merchants, accounts = data["merchants"], data["accounts"]
    scripts = []
    for i in range(pairs):
        merchant = merchants[i % len(merchants)]
        account = accounts[(i * 7) % len(accounts)]
        path = folder / f"payment-{i:02d}.sql"
        path.write_text(
            "\\set amount random(100, 20000)\n"
            f"SELECT make_payment('merchant' || chr(58) || '{merchant['id']}', gen_random_uuid()::text, 'pgbench', "
            f"'{merchant['id']}'::uuid, '{account['id']}'::uuid, :amount::bigint, '{merchant['currency']}', "
            "'pgbench');\n"
        )
        scripts.append(path)
    return scripts


def parse_pgbench_tps(output: str) -> float | None:
    """pgbench's tps, or None when the run did not measure anything.

    An aborted run still prints a tps line, computed over the few transactions done before its clients
    died (a broken script once gave "185 tps" from 5 transactions), so it counts as no measurement.
    """
    match, processed = TPS.search(output), PROCESSED.search(output)
    if not match or ABORTED in output or (processed and int(processed.group(1)) == 0):
        return None
    return float(match.group(1))


def pgbench_ceiling(
    dsn: str, data: dict[str, Any], folder: Path, *, clients: int, seconds: int, cpus: str = ""
) -> tuple[float | None, str, float]:
    """Payments per second PostgreSQL alone sustains; returns (tps, pgbench's output, the speed probe's
    median CPU ms while it ran)."""
    scripts = pgbench_scripts(data, folder / "pgbench")
    argv = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(2, clients)),
        "-T",
        str(seconds),
        "-P",
        "10",
    ]
    for script in scripts:
        argv += ["-f", f"{script}@1"]
    argv.append(dsn)
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    probe = SpeedProbe()
    probe.start()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        probe_ms = probe.stop()
    output = done.stdout + done.stderr
    (folder / "pgbench.log").write_text(" ".join(a if "@127" not in a else "<dsn>" for a in argv) + "\n" + output)
    return parse_pgbench_tps(output), output, probe_ms


@dataclass
class DatabaseCeiling:
    tps: float | None
    output: str
    probe_ms: float
    paused: int  # service processes held still while pgbench ran
    drain: pipeline_drain.Drain | None  # what the pipeline then did with the ceiling's payments


def database_ceiling(
    dsn: str, data: dict[str, Any], folder: Path, home: Path, *, clients: int, seconds: int, cpus: str = ""
) -> DatabaseCeiling:
    """pgbench with the platform's services paused, then the pipeline's drain of what it left behind."""
    after = asyncio.run(pipeline_drain.newest_payment_id(dsn))
    with processes_paused(service_pids(home), max_s=seconds + 150) as paused:
        tps, output, probe_ms = pgbench_ceiling(dsn, data, folder, clients=clients, seconds=seconds, cpus=cpus)
    if not paused:  # not a local platform: the services could not be held, there was no backlog to time
        return DatabaseCeiling(tps, output, probe_ms, 0, None)
    groups = platform_pid_groups(home) | {"instances": lambda: transaction_pids(home)}
    drain = asyncio.run(pipeline_drain.wait_settled(dsn, after, groups, timeout_s=max(120.0, 4.0 * seconds)))
    if not _wait_ingress_servers_up(home):
        print("database ceiling: HAProxy still sees a service down 30 s after the pause", flush=True)
    return DatabaseCeiling(tps, output, probe_ms, len(paused), drain)


def _wait_ingress_servers_up(home: Path, timeout_s: float = 30) -> bool:
    """After a pause HAProxy has marked the services down; the platform is back when they are up."""
    from newbank.runtime.layout import Layout

    layout = Layout.load(home)
    if layout is None:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            rows = layout.haproxy().stats()
        except (OSError, RuntimeError):
            rows = []
        servers = [r for r in rows if r.get("svname") not in ("FRONTEND", "BACKEND")]
        if servers and not any(r["status"].startswith("DOWN") for r in servers):
            return True
        time.sleep(0.25)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the trivial FastAPI app did not answer {url} in {timeout_s:.0f}s")


def framework_ceiling(
    folder: Path,
    *,
    users: int,
    seconds: float,
    warmup_s: float,
    wait: str,
    spawn_rate: float,
    processes: int = 1,
    cpus: str = "",
) -> tuple[WindowStats, dict[str, float], str, float]:
    """Requests/s of the trivial endpoint in one limited uvicorn; returns (stats, CPU, how it was limited, the
    speed probe's median CPU ms over the window)."""
    from newbank.runtime import cgroups, procs

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "loadtest.trivial_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    why_not = cgroups.available()
    limits = cgroups.LIMITS["transactions"]
    if why_not is None:
        argv = cgroups.join_and_exec(cgroups.prepare(folder, "framework-ceiling", limits), argv)
    limited = limits.describe() if why_not is None else f"NOT limited ({why_not})"
    server = procs.spawn(argv, folder / "trivial_app.log", cwd=Path(__file__).resolve().parent.parent)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz")
        run = LocustRun(
            folder,
            f"http://127.0.0.1:{port}",
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=warmup_s + seconds,
            processes=processes,
            wait=wait,
            mode="framework-ceiling",
            cpus=cpus,
            user_classes=["FrameworkCeilingUser"],
        )
        _, cpu, start, probe_ms = run_with_cpu(run, [server.pid], warmup_s=warmup_s, progress=False)
    finally:
        procs.stop_pid(server.pid, timeout_s=10)
        procs.reap(server.pid)
        cgroups.remove_all(folder)
    return window_stats(read_records(folder), start, start + seconds), cpu, limited, probe_ms
