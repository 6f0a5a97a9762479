"""Hold processes still (SIGSTOP) for a while, and be sure they run again (SIGCONT).

The database ceiling must measure PostgreSQL alone. pgbench's payments write outbox events like real
ones; with the services running, their relays publish those events and the cashback service and the
transaction instances consume them, on the same two cores, so the "database ceiling" measured the
database plus the whole asynchronous pipeline (382–446 tps with the services running, 692–825 tps with
them stopped, on one platform minutes apart, fourteenth session).

A watchdog process in a session of its own continues the processes after ``max_s`` whatever becomes
of the caller: a benchmark killed during the ceiling never leaves a platform frozen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence

from loadtest.cpu import stat_fields


def process_state(pid: int) -> str | None:
    """The one-letter state of ``/proc/<pid>/stat`` (``T`` = stopped), None when it is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def _signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def _start_watchdog(pids: Sequence[int], max_s: float) -> subprocess.Popen[bytes]:
    """``sleep max_s; kill -CONT pids`` in a new session, so that it outlives the caller."""
    script = f"sleep {max(max_s, 0.1):.1f}; kill -CONT {' '.join(str(p) for p in pids)} 2>/dev/null; true"
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(watchdog.pid, signal.SIGKILL)  # the shell and its sleep: the group is the watchdog's PID
    watchdog.wait()


@contextlib.contextmanager
def processes_paused(pids: Sequence[int], max_s: float) -> Iterator[list[int]]:
    """Stop ``pids`` for the ``with`` block (at most ``max_s`` seconds); yields those that were stopped."""
    targets = sorted({pid for pid in pids if pid > 1 and pid != os.getpid()})
    watchdog = _start_watchdog(targets, max_s) if targets else None
    stopped: list[int] = []
    try:
        stopped = [pid for pid in targets if _signal(pid, signal.SIGSTOP)]
        yield stopped
    finally:
        for pid in stopped:
            _signal(pid, signal.SIGCONT)
        if watchdog is not None:
            _stop_watchdog(watchdog)
