"""The infrastructure supervisor's rules on stand-in processes (``sleep``): restart, hold, backoff, lock;
and the reaper Patroni runs under (orphans reaped at once, Patroni woken, kept while it holds one).

Seconds, no platform: the components are ``sleep`` processes with a PID file, the clock is a fake one
where the rule is about time. ``test_supervisor.py`` runs the same code inside a real ``newbank up``.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from newbank.runtime import procs, supervisor
from newbank.runtime.layout import Layout
from newbank.runtime.patroni_cluster import REAPER
from newbank.runtime.reaper import children_of
from newbank.runtime.supervisor import Component, InfraSupervisor, active_hold, component_lock, hold, release


class Sleeper:
    """A process the supervisor can watch and start: ``sleep 600`` (or a command that dies at once)."""

    def __init__(self, root: Path, name: str, argv: tuple[str, ...] = ("sleep", "600")) -> None:
        self.root, self.name, self.argv = root, name, argv
        self.starts = 0

    @property
    def pid_file(self) -> Path:
        return self.root / f"{self.name}.pid"

    def pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        return pid if procs.pid_alive(pid) else None

    def start(self) -> None:
        self.starts += 1
        proc = procs.spawn(list(self.argv), self.root / f"{self.name}.log")
        procs.write_pid(self.pid_file, proc.pid)

    def kill(self) -> int:
        pid = self.pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            procs.reap(pid)
            if not procs.pid_alive(pid):
                break
            time.sleep(0.01)
        return pid

    def component(self) -> Component:
        return Component(self.name, self.pid, self.start, self.root / f"{self.name}.log")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _layout(tmp_path: Path) -> Layout:
    return Layout(home=tmp_path, ingress_port=0, ports={})


def _stop(*sleepers: Sleeper) -> None:
    for s in sleepers:
        procs.stop_pid(s.pid(), timeout_s=2)


def test_a_dead_process_is_started_again_and_counted(tmp_path: Path) -> None:
    sleeper = Sleeper(tmp_path, "etcd")
    sleeper.start()
    sup = InfraSupervisor(_layout(tmp_path), [sleeper.component()])
    try:
        assert sup.due() == []
        old = sleeper.kill()
        due = sup.due()
        assert [c.name for c in due] == ["etcd"]
        assert sup.restart(due[0]) is True
        assert sleeper.pid() not in (None, old)
        state = sup.status()["etcd"]
        assert state["restarts"] == 1 and state["last_restart_pid"] == sleeper.pid() and state["last_error"] == ""
    finally:
        _stop(sleeper)


def test_a_hold_is_respected_until_released(tmp_path: Path) -> None:
    sleeper = Sleeper(tmp_path, "rabbitmq")
    sleeper.start()
    sup = InfraSupervisor(_layout(tmp_path), [sleeper.component()])
    try:
        hold(tmp_path, "rabbitmq", "chaos 2a: broker down 30 s", ttl_s=60)
        sleeper.kill()
        assert sup.due() == []
        assert sup.status()["rabbitmq"]["held"].startswith("chaos 2a")
        assert release(tmp_path, "rabbitmq") is True
        due = sup.due()
        assert [c.name for c in due] == ["rabbitmq"] and sup.restart(due[0])
    finally:
        _stop(sleeper)


def test_an_expired_hold_or_one_whose_owner_died_counts_as_released(tmp_path: Path) -> None:
    hold(tmp_path, "etcd", "short", ttl_s=-1)
    assert active_hold(tmp_path, "etcd") is None
    assert not (tmp_path / "hold" / "etcd").exists()
    owner = procs.spawn(["true"], tmp_path / "true.log")
    owner.wait()
    entry = hold(tmp_path, "etcd", "by a chaos run that crashed", ttl_s=600)
    (tmp_path / "hold" / "etcd").write_text(
        (tmp_path / "hold" / "etcd").read_text().replace(f'"by_pid": {entry.by_pid}', f'"by_pid": {owner.pid}')
    )
    assert active_hold(tmp_path, "etcd") is None
    hold(tmp_path, "etcd", "maintenance, no owner", ttl_s=600, owned=False)
    assert active_hold(tmp_path, "etcd") is not None
    with pytest.raises(ValueError):
        hold(tmp_path, "../etc", "no")


def test_a_crash_loop_backs_off(tmp_path: Path) -> None:
    crasher = Sleeper(tmp_path, "patroni-pg0", ("true",))
    clock = Clock()
    sup = InfraSupervisor(_layout(tmp_path), [crasher.component()], clock=clock)
    waits = []
    for _ in range(6):
        for _ in range(200):  # the clock jumps forward until the supervisor is willing again
            due = sup.due()
            if due:
                break
            clock.now += 0.5
        waits.append(round(clock.now - (sup.state["patroni-pg0"].last_restart_at or clock.now), 1))
        sup.restart(due[0])
        time.sleep(0.05)  # `true` exits
    assert crasher.starts == 6
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    # Up longer than STABLE_S: the next crash is restarted at once again.
    sup.state["patroni-pg0"].last_restart_at = clock.now - supervisor.STABLE_S - 1
    crasher.argv = ("sleep", "600")
    crasher.start()
    sup.due()
    assert sup.state["patroni-pg0"].failures == 0
    _stop(crasher)


def test_no_restart_while_someone_else_starts_it(tmp_path: Path) -> None:
    sleeper = Sleeper(tmp_path, "etcd")
    sup = InfraSupervisor(_layout(tmp_path), [sleeper.component()])
    with component_lock(tmp_path, "etcd") as mine:
        assert mine
        assert sup.restart(sup.components[0]) is False
    assert sleeper.starts == 0
    assert sup.restart(sup.components[0]) is True
    _stop(sleeper)


def test_tick_restarts_in_the_background(tmp_path: Path) -> None:
    sleeper = Sleeper(tmp_path, "etcd")
    sup = InfraSupervisor(_layout(tmp_path), [sleeper.component()])

    async def scenario() -> None:
        await sup.tick()
        for _ in range(50):
            if sleeper.pid():
                return
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    try:
        assert sleeper.pid() and sup.status()["etcd"]["restarts"] == 1
    finally:
        _stop(sleeper)


# ---------------------------------------------------------------------------------------- reaper.py
class _Wakes(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(("PATCH", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_reaper_reaps_an_orphan_at_once_wakes_patroni_and_outlives_its_child_while_it_holds_one(
    tmp_path: Path,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Wakes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The "Patroni": starts an orphan (a "postmaster", double-forked like Patroni's) and prints its PID.
    script = (
        "import subprocess, sys, time; p = subprocess.Popen(['sh', '-c', 'sleep 600 & echo $!'],"
        " stdout=subprocess.PIPE); print(p.stdout.readline().decode().strip(), flush=True); p.wait(); time.sleep(600)"
    )
    out = tmp_path / "out"
    reaper = procs.spawn(
        [
            sys.executable,
            str(REAPER),
            "--wake",
            f"http://127.0.0.1:{server.server_port}",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        out,
    )
    try:
        for _ in range(100):
            if out.exists() and out.read_text().strip():
                break
            time.sleep(0.05)
        orphan = int(out.read_text().split()[0])
        child = children_of(reaper.pid)
        assert orphan in child and len(child) == 2  # the "Patroni" and the orphan it left with us
        patroni = next(pid for pid in child if pid != orphan)
        os.kill(patroni, signal.SIGKILL)  # chaos 1c: the agent dies, its postmaster stays
        time.sleep(0.3)
        assert reaper.poll() is None and _state(orphan) == "S"  # still held by the reaper
        os.kill(orphan, signal.SIGKILL)  # chaos 1a under the next agent: the postmaster dies
        t0 = time.monotonic()
        while _state(orphan) != "gone" and time.monotonic() - t0 < 2:
            time.sleep(0.005)
        assert time.monotonic() - t0 < 0.5, "the orphan stayed a zombie"  # PID 1 here: 1.3-1.7 s
        assert reaper.wait(timeout=5) == 128 + signal.SIGKILL  # nothing left: exits with its child's status
        for _ in range(100):
            if _Wakes.seen:
                break
            time.sleep(0.02)
        assert ("PATCH", "/config", b'{"postgresql": {}}') in _Wakes.seen
    finally:
        procs.stop_pid(reaper.pid, timeout_s=2)
        server.shutdown()
