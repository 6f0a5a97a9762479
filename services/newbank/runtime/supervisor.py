"""Supervision of the infrastructure processes of ``newbank up``: what the kubelet does for a pod.

The controller (``newbank.runtime.controller``) runs ``InfraSupervisor.tick`` every ``TICK_S``: a
component whose process is gone — etcd, the Patroni agent of ``pg0`` / ``pg1``, the RabbitMQ node — is
started again, each in a thread of its own so that a slow broker start never delays a Patroni restart.
Liveness is the process (its PID file), as a kubelet without a liveness probe sees it: a hung
process is not this module's business.

- **Backoff**: the first restart after a stable run is immediate (a Patroni agent must be back before
  its leader key's ``ttl`` expires); a component that dies again within ``STABLE_S`` of its restart
  waits 1, 2, 4 … ``MAX_BACKOFF_S`` seconds, so a crash loop does not spin.
- **Holds**: a deliberate outage is declared, never guessed. ``hold(home, component, reason, ttl_s)``
  writes ``<home>/hold/<component>`` (JSON: reason, until, by pid); while it is there the component
  is left down. ``release`` removes it; a hold past its expiry, or whose writing process is gone,
  counts as released, so a crashed chaos run cannot leave a component unsupervised. ``newbank down`` holds everything
  while it stops it; the chaos scenarios that keep a controlled outage (broker down 30 s, a lost node)
  hold the component for it.
- **One starter at a time**: ``component_lock(home, component)`` (``flock`` on ``<home>/locks/``) is
  taken by the supervisor around a restart and by ``newbank up`` around its start, so the two never
  start the same component twice.

Every restart is a log line (``supervisor: restarting ...``) and a count in ``controller.json``
(``infra``), which ``newbank status`` shows in its RESTARTS and NOTE columns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from newbank.runtime import procs
from newbank.runtime.layout import Layout

log = logging.getLogger("newbank.supervisor")
TICK_S = 0.5
STABLE_S = 30.0  # up this long after a restart: the next death restarts at once again
MAX_BACKOFF_S = 60.0
DEFAULT_HOLD_S = 300.0


# ---------------------------------------------------------------------------------------- holds
@dataclass
class Hold:
    component: str
    reason: str
    until: float  # wall clock
    since: float
    by_pid: int

    def left_s(self, now: float | None = None) -> float:
        return self.until - (time.time() if now is None else now)


def hold_dir(home: Path) -> Path:
    return home / "hold"


def _hold_file(home: Path, component: str) -> Path:
    if not component or "/" in component or component.startswith("."):
        raise ValueError(f"not a component name: {component!r}")
    return hold_dir(home) / component


def hold(home: Path, component: str, reason: str, ttl_s: float = DEFAULT_HOLD_S, *, owned: bool = True) -> Hold:
    """Tell the supervisor to leave ``component`` down (or stopped) for up to ``ttl_s`` seconds.

    ``owned``: the hold also ends when this process does (a crashed chaos run holds nothing);
    ``owned=False`` keeps it until it expires or is released.
    """
    now = time.time()
    entry = Hold(component, reason, now + ttl_s, now, os.getpid() if owned else 0)
    path = _hold_file(home, component)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{component}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(entry)))
    tmp.replace(path)
    return entry


def release(home: Path, component: str) -> bool:
    """Hand ``component`` back to the supervisor; True if there was a hold."""
    try:
        _hold_file(home, component).unlink()
    except FileNotFoundError:
        return False
    return True


def active_hold(home: Path, component: str, now: float | None = None) -> Hold | None:
    """The hold on ``component`` if there is one that has not expired (an expired one is removed)."""
    path = _hold_file(home, component)
    try:
        entry = Hold(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        # Unreadable (half-written by hand?): honour it for a default period from its mtime.
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
            entry = Hold(component, "unreadable hold file", mtime + DEFAULT_HOLD_S, mtime, 0)
            return entry if entry.left_s(now) > 0 else None
        return None
    # A hold lasts until its expiry, and no longer than the process that wrote it (0: no owner).
    if entry.left_s(now) <= 0 or (entry.by_pid > 0 and not procs.pid_alive(entry.by_pid)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    return entry


def holds(home: Path) -> dict[str, Hold]:
    found: dict[str, Hold] = {}
    folder = hold_dir(home)
    if folder.is_dir():
        for path in folder.iterdir():
            if not path.name.startswith("."):
                entry = active_hold(home, path.name)
                if entry is not None:
                    found[path.name] = entry
    return found


@contextlib.contextmanager
def held(home: Path, component: str, reason: str, ttl_s: float = DEFAULT_HOLD_S) -> Iterator[Hold]:
    """``with held(home, "rabbitmq", "chaos 2a"):`` — the hold is released however the block ends."""
    entry = hold(home, component, reason, ttl_s)
    try:
        yield entry
    finally:
        release(home, component)


# ---------------------------------------------------------------------------------------- locks
@contextlib.contextmanager
def component_lock(home: Path, component: str, *, blocking: bool = True) -> Iterator[bool]:
    """Exclusive right to start ``component``; yields False when ``blocking=False`` and it is taken."""
    folder = home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{component}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------- supervision
@dataclass
class Component:
    """One supervised process: how to tell it runs, how to start it."""

    name: str
    pid: Callable[[], int | None]  # the live PID, None when it is gone
    start: Callable[[], None]  # blocking; raises when it could not start
    log_file: Path


@dataclass
class ComponentState:
    restarts: int = 0
    failures: int = 0  # consecutive restarts that did not stay up STABLE_S
    last_pid: int | None = None
    down_since: float | None = None  # wall clock, when the supervisor first saw it gone
    last_restart_at: float | None = None  # wall clock, when the last restart began
    last_restart_pid: int | None = None
    last_restart_s: float | None = None  # how long the last start took
    next_try_at: float = 0.0
    last_error: str = ""
    held: str = ""  # the active hold's reason, for the status
    starting: bool = False


def backoff_s(failures: int) -> float:
    """Wait before the restart that follows ``failures`` consecutive unstable restarts."""
    return 0.0 if failures <= 0 else min(MAX_BACKOFF_S, 2.0 ** (failures - 1))


def components_of(layout: Layout) -> list[Component]:
    etcd, cluster, rabbit = layout.etcd(), layout.pg_cluster(), layout.rabbitmq()
    found = [Component("etcd", lambda: etcd.pid, lambda: etcd.start(), etcd.log_file)]
    for node in cluster.nodes:
        found.append(
            Component(
                f"patroni-{node.name}",
                lambda node=node: node.patroni_pid,  # type: ignore[misc]
                lambda node=node: cluster.start_node(node),  # type: ignore[misc]
                node.log_file,
            )
        )
    found.append(Component("rabbitmq", lambda: rabbit.pid, lambda: rabbit.start(), rabbit.log_file))
    return found


class InfraSupervisor:
    """Restarts dead infrastructure processes of one platform; see the module's docstring."""

    def __init__(
        self, layout: Layout, components: list[Component] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.layout = layout
        self.components = components if components is not None else components_of(layout)
        self.clock = clock
        self.state: dict[str, ComponentState] = {c.name: ComponentState() for c in self.components}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False

    # ------------------------------------------------------------ one pass
    def due(self) -> list[Component]:
        """The components to restart now (dead, not held, backoff over, not already starting)."""
        now = self.clock()
        out = []
        for comp in self.components:
            state = self.state[comp.name]
            if state.starting:
                continue
            entry = active_hold(self.layout.home, comp.name, now)
            state.held = f"{entry.reason} ({entry.left_s(now):.0f} s left)" if entry else ""
            pid = comp.pid()
            if pid:
                state.last_pid, state.down_since = pid, None
                if state.failures and state.last_restart_at and now - state.last_restart_at > STABLE_S:
                    state.failures = 0  # it stayed up: the next crash restarts at once
                continue
            if state.down_since is None:
                state.down_since = now
                if not entry:
                    log.warning("supervisor: %s (pid %s) is not running", comp.name, state.last_pid)
            if entry or self.stopping:
                continue
            if now < state.next_try_at:
                continue
            out.append(comp)
        return out

    def restart(self, comp: Component) -> bool:
        """Start ``comp`` (blocking) under its lock; True when it runs afterwards."""
        state = self.state[comp.name]
        with component_lock(self.layout.home, comp.name, blocking=False) as mine:
            if not mine:
                return False  # `newbank up` (or another supervisor) is starting it right now
            if comp.pid() or active_hold(self.layout.home, comp.name):
                return bool(comp.pid())
            now = self.clock()
            if state.last_pid:
                procs.reap(state.last_pid)  # a process we started earlier is our zombie until reaped
            if state.last_restart_at and now - state.last_restart_at < STABLE_S:
                state.failures += 1
            state.restarts += 1
            state.last_restart_at = now
            down_s = now - state.down_since if state.down_since else 0.0
            log.warning(
                "supervisor: restarting %s (pid %s gone, noticed %.1f s ago; restart #%d, backoff next %.0f s)",
                comp.name,
                state.last_pid,
                down_s,
                state.restarts,
                backoff_s(state.failures + 1),
            )
            try:
                comp.start()
            except Exception as exc:
                state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                state.failures += 1
                log.error("supervisor: could not restart %s: %s (log: %s)", comp.name, state.last_error, comp.log_file)
                return False
            finally:
                state.last_restart_s = round(self.clock() - now, 2)
                state.next_try_at = self.clock() + backoff_s(state.failures + 1)
            pid = comp.pid()
            state.last_restart_pid = pid
            state.last_error = "" if pid else "exited right after its start"
            log.info("supervisor: %s started again, pid %s (%.1f s)", comp.name, pid, state.last_restart_s)
            return bool(pid)

    async def tick(self) -> None:
        """One pass from the controller's loop: restarts run in threads, one per component."""
        for comp in await asyncio.to_thread(self.due):
            state = self.state[comp.name]
            state.starting = True

            async def run(comp: Component = comp, state: ComponentState = state) -> None:
                try:
                    await asyncio.to_thread(self.restart, comp)
                finally:
                    state.starting = False

            task = asyncio.ensure_future(run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def status(self) -> dict[str, dict[str, Any]]:
        """For ``controller.json`` → ``newbank status``."""
        return {name: asdict(state) for name, state in self.state.items()}


def read_status(layout: Layout) -> dict[str, dict[str, Any]]:
    """The supervisor's last status as the controller wrote it (empty when none)."""
    try:
        data = json.loads((layout.home / "controller.json").read_text())
    except (OSError, ValueError):
        return {}
    infra = data.get("infra")
    return infra if isinstance(infra, dict) else {}
