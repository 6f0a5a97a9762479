"""Where one transaction instance spends its CPU under load: py-spy, then the top functions.

Starts the load (the same scenario as ``newbank loadtest``), attaches ``py-spy record`` to one
transaction-service instance for the middle of the run, and writes into the results folder:
``profile.txt`` (py-spy's collapsed stacks), ``flamegraph.svg`` (a second, shorter recording, when
asked) and ``top.txt`` (functions by own time and by time including callees, in % of samples).

    python -m loadtest.profile_instance --data results/loadtest-…/data.json --duration 40
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from loadtest.run import LocustRun, platform_target, transaction_pids

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# A thread-pool worker parked on its queue: py-spy --nonblocking cannot always tell it is idle.
IDLE_LEAVES = frozenset({"Condition.wait (threading.py)", "Condition._acquire_restore (threading.py)"})


def short_frame(frame: str) -> str:
    """``func (…/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py)``: lines merge, paths shrink."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "services/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def top_functions(collapsed: str, limit: int = 25) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """From py-spy's raw output: (samples, [(function, % own time)], [(function, % including callees)])."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(f) for f in stack.split(";") if f]
        # py-spy puts the thread ("process 1:"/"thread (0x…)") first; it is not a function.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or (frames[-1] in IDLE_LEAVES and any(f.startswith("Queue.get") for f in frames)):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    pct = 100.0 / total if total else 0.0
    return (
        total,
        [(f, n * pct) for f, n in own.most_common(limit)],
        [(f, n * pct) for f, n in inclusive.most_common(limit)],
    )


# What a reader of the profile wants to know, as "share of samples whose stack contains this frame".
CATEGORIES: dict[str, str] = {
    "payment SQL call (make_payment, pool.fetchval)": "_call_with_retry (",
    "asyncpg pool reset on release (an extra round trip per request)": "Connection.reset (",
    "sync FastAPI dependency → thread-pool hop": "run_in_threadpool (",
    "auth (key resolution)": "newbank/auth.py",
    "inbox consumer (one transaction per batch of waiting events)": "InboxConsumer.",
    "outbox relay": "OutboxRelay.",
    "RabbitMQ I/O (aiormq)": "aiormq/",
    "HTTP requests, all of their handling": "MetricsMiddleware.__call__ (",
    "Prometheus metrics updates": "prometheus_client/",
    "uvicorn response send": "RequestResponseCycle.send (",
}


def categories(collapsed: str) -> list[tuple[str, float]]:
    """Share of the (non-idle) samples whose stack passes through each category's frame."""
    hits = dict.fromkeys(CATEGORIES, 0)
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        leaf = short_frame(stack.rsplit(";", 1)[-1])
        if leaf in IDLE_LEAVES and "Queue.get" in stack:
            continue
        total += int(count_text)
        for name, needle in CATEGORIES.items():
            if needle in stack:
                hits[name] += int(count_text)
    return [(name, 100.0 * n / total if total else 0.0) for name, n in hits.items()]


def format_top(total: int, own: list[tuple[str, float]], inclusive: list[tuple[str, float]]) -> str:
    lines = [f"{total} samples", "", "own time (the function itself):"]
    lines += [f"  {p:5.1f}%  {f}" for f, p in own]
    lines += ["", "including callees:"]
    lines += [f"  {p:5.1f}%  {f}" for f, p in inclusive]
    return "\n".join(lines)


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def record(pid: int, seconds: int, out: Path, fmt: str, rate: int = 100) -> None:
    subprocess.run(
        [
            py_spy(),
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            str(rate),
            "-f",
            fmt,
            "-o",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    host, home = platform_target()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=host)
    parser.add_argument("--data", type=Path, required=True, help="data.json written by setup_data")
    parser.add_argument("--results", type=Path, default=Path("results") / f"profile-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("-u", "--users", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=40, help="seconds of load; the middle half is recorded")
    parser.add_argument("--wait", default="1.5,3.5")
    parser.add_argument("--pid", type=int, default=None, help="the instance to profile (default: the first)")
    parser.add_argument("--svg", action="store_true", help="also record a flamegraph.svg")
    args = parser.parse_args(argv)

    pid = args.pid or next(iter(transaction_pids(home)), None)
    if not pid:
        print(f"no transaction instance found in {home}/instances.json (is the platform up?)", file=sys.stderr)
        return 1
    results = args.results.resolve()
    run = LocustRun(results, args.host, args.data.resolve(), users=args.users, run_time_s=args.duration, wait=args.wait)
    proc = run.start()
    try:
        time.sleep(args.duration / 4)
        seconds = max(args.duration // 2, 5)
        print(f"recording transaction instance pid {pid} for {seconds}s under {args.users} users ...", flush=True)
        record(pid, seconds, results / "profile.txt", "raw")
        if args.svg:
            record(pid, max(seconds // 2, 5), results / "flamegraph.svg", "flamegraph")
    finally:
        run.finish(proc)
    collapsed = (results / "profile.txt").read_text()
    text = (
        format_top(*top_functions(collapsed))
        + "\n\nwhere it goes (share of samples through):\n"
        + "\n".join(f"  {pct:5.1f}%  {name}" for name, pct in categories(collapsed))
    )
    (results / "top.txt").write_text(text + "\n")
    print(text)
    print(f"\nprofile: {results}/profile.txt" + (f", {results}/flamegraph.svg" if args.svg else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
