"""The controller daemon of ``newbank up``: keeps the wanted service instances running behind HAProxy,
and the infrastructure processes (etcd, the Patroni agents, RabbitMQ) running (``supervisor``).

It restarts a dead instance, scales a service to the count in ``<home>/desired.json`` (written by
``newbank scale`` or by the operator through ``LocalScaleTarget``), registers a new instance in HAProxy
only once it is ready, and takes one out by draining it before its process is stopped. Plug-ins run
from the same loop: ``controller.add_periodic(fn, interval_s)``, and — when the operator package
provides it — ``newbank_operator.local_loop.run_local_operator`` (see ``_run_operator``).

Run as ``python -m newbank.runtime.controller <home>``; ``newbank up`` starts it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from newbank.runtime import cgroups, procs
from newbank.runtime.haproxy import HAProxy
from newbank.runtime.instances import Instance, load_instances, log_file, save_instances, start_instance, stop_instance
from newbank.runtime.jsonlog import JsonFormatter
from newbank.runtime.layout import DEFAULT_REPLICAS, MAX_INSTANCES, SERVICES, Layout
from newbank.runtime.scale_target import LocalScaleTarget, read_desired, write_desired
from newbank.runtime.supervisor import TICK_S as SUPERVISOR_TICK_S
from newbank.runtime.supervisor import InfraSupervisor

log = logging.getLogger("newbank.controller")
TICK_S = 0.5
READY_TIMEOUT_S = 180.0


class Controller:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.haproxy: HAProxy = layout.haproxy()
        self.instances: list[Instance] = load_instances(layout)
        self.use_cgroups = cgroups.available() is None
        self._busy: set[str] = set()  # instances with a start/stop in flight
        self._removing: set[str] = set()  # instances on their way out (draining, stopping)
        self._was_ready: dict[str, bool] = {i.name: i.registered for i in self.instances}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._periodic: list[tuple[Callable[[], Any], float]] = []
        self._stopping = asyncio.Event()
        self.errors: dict[str, str] = {}
        # The kubelet's part: a dead etcd, Patroni agent or broker is started again (holds respected).
        self.supervisor: InfraSupervisor | None = (
            InfraSupervisor(layout) if os.environ.get("NEWBANK_SUPERVISE", "on") != "off" else None
        )

    # ---------------------------------------------------------------- plug-in points
    def add_periodic(self, fn: Callable[[], Awaitable[None] | None], interval_s: float) -> None:
        """Run ``fn`` (sync or async) every ``interval_s`` seconds inside the controller loop."""
        self._periodic.append((fn, interval_s))

    def scale_target(self, service: str = "transactions") -> LocalScaleTarget:
        return LocalScaleTarget(self.layout, service, lambda: self.instances, self.rolling_restart)

    async def rolling_restart(self, service: str) -> None:
        """Restart every instance of ``service`` one after the other: drain, stop, start, ready again."""
        for instance in [i for i in self.instances if i.service == service]:
            if instance.name in self._busy:
                continue
            self._busy.add(instance.name)
            try:
                if self.haproxy.pid:
                    await asyncio.to_thread(self.haproxy.remove_server, instance.service, instance.name)
                instance.registered = False
                await asyncio.to_thread(stop_instance, self.layout, instance)
            finally:
                self._busy.discard(instance.name)
            log.info("rolling restart of %s", instance.name)
            self._start(instance)
            for _ in range(int(READY_TIMEOUT_S / 0.3)):  # the next one only when this one serves again
                if instance.registered or not instance.alive():
                    break
                await asyncio.sleep(0.3)

    async def _run_operator(self) -> None:
        """The one place that hands the local platform to the operator's loop (if installed)."""
        if os.environ.get("NEWBANK_OPERATOR", "on") == "off":
            log.info("operator loop disabled (NEWBANK_OPERATOR=off)")
            return
        try:
            from newbank_operator.local_loop import run_local_operator  # type: ignore[import-not-found]
        except ImportError as exc:
            log.info("no operator loop (%s)", exc)
            return
        rabbit = self.layout.rabbitmq()
        while not self._stopping.is_set():
            try:
                await run_local_operator(
                    self.scale_target("transactions"),
                    rabbit.management_url,
                    rabbit.user,
                    rabbit.password,
                    self.layout.home,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("operator loop failed; restarting it in 5 s")
            await asyncio.sleep(5)

    # ---------------------------------------------------------------- main loop
    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        if not self.use_cgroups:
            log.warning("running services without CPU/memory limits: %s", cgroups.available())
        self._spawn(self._run_operator())
        if self.supervisor is not None:
            self._spawn(self._every(self.supervisor.tick, SUPERVISOR_TICK_S))
        for fn, interval in self._periodic:
            self._spawn(self._every(fn, interval))
        last_haproxy_check = 0.0
        while not self._stopping.is_set():
            try:
                self._reconcile()
                if time.monotonic() - last_haproxy_check > 2:
                    last_haproxy_check = time.monotonic()
                    await asyncio.to_thread(self._reconcile_haproxy)
                self._write_status()
            except Exception:
                log.exception("reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK_S)
        if self.supervisor is not None:
            self.supervisor.stopping = True  # no new restart; one in flight finishes in its thread
        for task in list(self._tasks):
            task.cancel()
        save_instances(self.layout, self.instances)
        log.info("controller stopped")

    async def _every(self, fn: Callable[[], Any], interval_s: float) -> None:
        while not self._stopping.is_set():
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("periodic hook %r failed", fn)
            await asyncio.sleep(interval_s)

    def _reconcile(self) -> None:
        desired = read_desired(self.layout)
        for service in SERVICES:
            mine = sorted((i for i in self.instances if i.service == service), key=lambda i: i.slot)
            want = max(0, min(desired.get(service, DEFAULT_REPLICAS[service]), MAX_INSTANCES[service]))
            for instance in mine:
                if instance.name not in self._busy and not instance.alive():
                    self._restart(instance)
            if len(mine) < want:
                used = {i.slot for i in mine}
                for slot in [s for s in range(1, MAX_INSTANCES[service] + 1) if s not in used][: want - len(mine)]:
                    port = self.layout.instance_port(service, slot)
                    instance = Instance(service, slot, port)
                    self.instances.append(instance)
                    self._start(instance)
            staying = [i for i in mine if i.name not in self._removing]
            if len(staying) > want:
                idle = [i for i in staying if i.name not in self._busy]
                for instance in idle[::-1][: len(staying) - want]:
                    self._busy.add(instance.name)
                    self._removing.add(instance.name)
                    self._spawn(self._remove(instance))
        save_instances(self.layout, self.instances)

    def _restart(self, instance: Instance) -> None:
        """Restart at once after a crash of a healthy instance; back off when it keeps failing."""
        procs.reap(instance.pid)
        backoff = min(30.0, 2.0 ** min(instance.failures, 5)) if instance.failures else 0.0
        if time.time() - instance.started_at < backoff:
            return
        log.warning("instance %s (pid %s) is not running; restarting it", instance.name, instance.pid)
        instance.restarts += 1
        if not instance.registered or not self._was_ready.get(instance.name, False):
            instance.failures += 1
        self._was_ready[instance.name] = False
        self._start(instance)

    def _start(self, instance: Instance) -> None:
        self._busy.add(instance.name)
        try:
            start_instance(self.layout, instance, use_cgroups=self.use_cgroups)
        except Exception as exc:
            self._busy.discard(instance.name)
            self.errors[instance.name] = f"could not start: {exc}"
            log.exception("could not start %s", instance.name)
            instance.started_at = time.time()
            return
        log.info("started %s pid %s port %s", instance.name, instance.pid, instance.port)
        self._spawn(self._register_when_ready(instance))

    async def _register_when_ready(self, instance: Instance) -> None:
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not await asyncio.to_thread(instance.probe, "/readyz"):
                if not instance.alive():
                    self.errors[instance.name] = f"exited during start-up (log: {log_file(self.layout, instance)})"
                    return
                if time.monotonic() > deadline:
                    self.errors[instance.name] = f"not ready after {READY_TIMEOUT_S:.0f} s"
                    return
                await asyncio.sleep(0.3)
            await asyncio.to_thread(self.haproxy.add_server, instance.service, instance.name, instance.port)
            instance.registered = True
            instance.failures = 0
            self._was_ready[instance.name] = True
            self.errors.pop(instance.name, None)
            log.info("registered %s in haproxy", instance.name)
        except Exception as exc:
            self.errors[instance.name] = f"registration failed: {exc}"
            log.exception("registering %s failed", instance.name)
        finally:
            self._busy.discard(instance.name)

    async def _remove(self, instance: Instance) -> None:
        """Drain in HAProxy first, stop the process only when no request is left on it."""
        try:
            if self.haproxy.pid:
                await asyncio.to_thread(self.haproxy.remove_server, instance.service, instance.name)
            instance.registered = False
            await asyncio.to_thread(stop_instance, self.layout, instance)
            self.instances = [i for i in self.instances if i.name != instance.name]
            save_instances(self.layout, self.instances)
            log.info("removed %s (drained in %.1f s, deleted after %.1f s)", instance.name, *self.haproxy.last_removal)
        except Exception:
            log.exception("removing %s failed; will retry", instance.name)
        finally:
            self._busy.discard(instance.name)
            self._removing.discard(instance.name)

    def _reconcile_haproxy(self) -> None:
        """Restart a dead ingress with the current instances; drop servers nobody runs."""
        if not self.haproxy.pid:
            log.warning("haproxy is not running; restarting it")
            servers: dict[str, list[tuple[str, int]]] = {}
            for i in self.instances:
                if i.registered:
                    servers.setdefault(i.service, []).append((i.name, i.port))
            self.haproxy.servers = servers
            self.haproxy.start()
            return
        known = {i.name for i in self.instances}
        for service in SERVICES:
            for name in self.haproxy.server_states(service):
                if name not in known and name not in self._busy:
                    log.warning("haproxy server %s/%s has no instance; removing it", service, name)
                    self.haproxy.remove_server(service, name, drain_timeout_s=5)

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "heartbeat": time.time(),
            "cgroups": self.use_cgroups,
            "cgroups_unavailable": cgroups.available(),
            "busy": sorted(self._busy),
            "errors": self.errors,
            "infra": self.supervisor.status() if self.supervisor is not None else {},
        }
        tmp = self.layout.home / "controller.json.tmp"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.layout.home / "controller.json")


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    home = Path(args[0]) if args else None
    layout = Layout.from_env(home)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter("controller", str(os.getpid())))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if not layout.desired_file.exists():
        write_desired(layout, dict(DEFAULT_REPLICAS))
    procs.write_pid(layout.controller_pid_file, os.getpid())
    asyncio.run(Controller(layout).run())


if __name__ == "__main__":
    main()
