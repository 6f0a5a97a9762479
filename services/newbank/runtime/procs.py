"""Start, find and stop background processes by PID (never by name).

Every server of the local runtime is a child in its own session, with its output in a log file,
so that a crash of the CLI or of a test leaves nothing that cannot be found again by its PID file.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartupError(RuntimeError):
    """A component did not become ready; names it and its log file, and quotes the log's last lines
    (a test's state folder, logs included, is gone by the time anyone reads the failure)."""

    def __init__(self, component: str, reason: str, log_file: Path | None = None) -> None:
        self.component = component
        self.log_file = log_file
        where = f" (log: {log_file})" if log_file else ""
        super().__init__(f"{component}: {reason}{where}{_log_tail(log_file)}")


def _log_tail(log_file: Path | None, lines: int = 20, max_chars: int = 4000) -> str:
    try:
        text = log_file.read_text(errors="replace") if log_file else ""
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])[-max_chars:]
    return f"\n--- last lines of {log_file.name} ---\n{tail}" if tail else ""


def spawn(
    argv: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached (own session), stdout+stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs.update(user=user, group=user, extra_groups=[])
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            close_fds=True,
            **kwargs,
        )


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live process (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reap(pid: int) -> None:
    """Collect the exit status of a child of ours so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int | None, *, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, wait up to ``timeout_s``, then SIGKILL. Returns True if it was running."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return True


def kill_pid(pid: int | None) -> None:
    """SIGKILL without waiting for anything (chaos: a crash, not a shutdown)."""
    if pid_alive(pid):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
    component: str = "",
    log_file: Path | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``check`` until it is true; fail early when ``alive`` says the process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if alive is not None and not alive():
            raise StartupError(component, "process exited during start-up", log_file)
        if time.monotonic() > deadline:
            raise StartupError(component, f"not ready after {timeout_s:.0f} s", log_file)
        time.sleep(interval_s)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# Ports handed out for tests come from below the kernel's ephemeral range (32768+), so that a client
# connection never takes a server's port in the moment between choosing it and binding it (or while a
# test holds a broker down before starting it again on the same port).
TEST_PORT_RANGE = (10000, 19999)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now (for tests)."""
    socks: list[socket.socket] = []
    try:
        low, high = TEST_PORT_RANGE
        while len(socks) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", random.randint(low, high)))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (for tests)."""
    return free_ports(1)[0]


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def sys_executable() -> str:
    """The interpreter of the repo's virtual environment (also used for child processes)."""
    import sys

    return sys.executable


def repo_root() -> Path:
    """The repository root (this file is services/newbank/runtime/procs.py)."""
    return Path(__file__).resolve().parents[3]
