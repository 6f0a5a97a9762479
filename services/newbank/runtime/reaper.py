"""Run Patroni under a prompt reaper: ``python reaper.py [--wake URL] -- patroni <config>``.

Why (chaos 1a, kill -9 of the primary's postmaster): Patroni starts its postmaster through a helper
that exits at once, so the postmaster is an orphan, adopted by the nearest *child subreaper* — without
this wrapper, PID 1. On this machine PID 1 (a VM agent) reaps orphans only every second or two; until
then the dead postmaster is a zombie, and psutil's ``is_running()`` — which Patroni trusts — says a
zombie runs. Patroni therefore spent 1.3-1.7 s of failed cycles ("Error communicating with PostgreSQL.
Will try again later") before it saw "Postgresql is not running" and restarted it.

This process makes itself the child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), starts Patroni as
its child, forwards the usual signals to it, and reaps every adopted orphan the moment it exits. When
one does (the postmaster, or backends it left behind), it wakes Patroni's HA loop at once with a no-op
``PATCH /config`` (Patroni calls ``ha.wakeup()`` after any config PATCH; ``{"postgresql": {}}``
changes nothing and writes nothing to the DCS) instead of letting it sleep out its ``loop_wait``.
When Patroni exits (killed: chaos 1c), this process stays while it still has an adopted child — the
postmaster Patroni left running — so that postmaster is still reaped at once when it dies, even under
the Patroni that the supervisor starts next (whose REST URL is the same); it exits, with Patroni's
status, once nothing is left. A signal that arrives after Patroni is gone makes it exit at once.

Only the standard library: it runs as the ``postgres`` user by its path, without the package. The
runtime (``PgCluster.start_node``) writes Patroni's own PID, found as this process's child, to the
node's PID file (root's), and this wrapper's PID next to it (with those of earlier wrappers still
holding a postmaster); all are stopped by PID.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
WAKE_MIN_INTERVAL_S = 0.3


def _wake(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/config",
        data=json.dumps({"postgresql": {}}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2):
            pass
    except OSError:
        pass  # Patroni busy or down: its own loop comes a second later anyway


def run(argv: Sequence[str]) -> int:
    args = list(argv)
    wake_url = ""
    if args[:1] == ["--wake"]:
        wake_url, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: reaper.py [--wake URL] -- command ...", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    child = subprocess.Popen(args)
    child_code: int | None = None

    def forward(signum: int, _frame: object) -> None:
        if child_code is not None:  # Patroni is gone (its PID may be reused): we only hold orphans
            raise SystemExit(128 + signum)
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    last_wake = 0.0
    wakes: list[threading.Thread] = []
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # nobody left: Patroni and every orphan it left with us are gone
            break
        if pid == child.pid:
            child_code = os.waitstatus_to_exitcode(status)
            continue  # keep reaping the postmaster it left (chaos 1c) until it too is gone
        # An adopted orphan exited: most likely the postmaster. Tell Patroni now, not in a second.
        if wake_url and time.monotonic() - last_wake > WAKE_MIN_INTERVAL_S:
            last_wake = time.monotonic()
            wakes = [w for w in wakes if w.is_alive()]
            wakes.append(threading.Thread(target=_wake, args=(wake_url,), daemon=True))
            wakes[-1].start()
    for wake in wakes:  # the last orphan may have been the postmaster: its wake must still go out
        wake.join(timeout=3)
    code = child_code or 0
    return code if code >= 0 else 128 - code


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
