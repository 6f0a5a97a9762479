"""The operator's loop for the local runtime (``newbank up``): same decisions, local edges.

Scaling reads the transaction-service instances' ``/metrics`` and sets the instance count through
the runtime's target (HAProxy follows); recovery watches the local RabbitMQ. The policy is a
CashbackPlatform spec (``<state_dir>/operator.json`` if present, else local defaults), and the
status the operator would write on Kubernetes goes to ``<state_dir>/operator-status.json``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from newbank.messaging.topology import TOPOLOGY
from newbank_operator.control import ControlState, transaction_readings
from newbank_operator.metrics import scrape
from newbank_operator.rabbitmq import ManagementClient
from newbank_operator.reconcile import post_flush, utc_now
from newbank_operator.recovery import RecoveryEdges, describe, execute, plan_recovery
from newbank_operator.scaling import decide
from newbank_operator.spec import PlatformSpec, parse_spec
from newbank_operator.status import build_status

log = logging.getLogger("newbank_operator.local")

SPEC_FILE = "operator.json"
STATUS_FILE = "operator-status.json"

# One machine (2 cores, 500m per transaction instance): the runtime's default of 2 instances as the
# floor, 6 as the ceiling, and a faster reaction than a cluster's. <state_dir>/operator.json overrides.
LOCAL_DEFAULT_SPEC: dict[str, Any] = {
    "scaling": {
        "minReplicas": 2,
        "maxReplicas": 6,
        "syncPeriodSeconds": 5,
        "scaleDown": {"stabilizationWindowSeconds": 60},
    },
    "queues": [{"name": spec.name} for spec in TOPOLOGY.queues],
    "recovery": {"zeroConsumerGraceSeconds": 60},
}


class ScaleTarget(Protocol):
    """What the runtime offers: the transaction service's instances and their count."""

    def instance_urls(self) -> list[str]: ...
    def current_replicas(self) -> int: ...
    def set_replicas(self, n: int) -> Awaitable[None] | None: ...


@runtime_checkable
class RestartsConsumers(Protocol):
    """Optional: restart the consumers of a service (the local twin of a rollout restart)."""

    def restart_consumers(self, service: str) -> Awaitable[None] | None: ...


@runtime_checkable
class ListsAllInstances(Protocol):
    """Optional: base URLs of every service's instances (outbox flush goes to all of them)."""

    def all_instance_urls(self) -> list[str]: ...


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def load_spec(state_dir: Path | None, override: Mapping[str, Any] | None = None) -> PlatformSpec:
    raw: Mapping[str, Any] = LOCAL_DEFAULT_SPEC
    if override is not None:
        raw = override
    elif state_dir is not None and (state_dir / SPEC_FILE).exists():
        try:
            raw = json.loads((state_dir / SPEC_FILE).read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", state_dir / SPEC_FILE, exc)
    return parse_spec(raw)


def _write_status(state_dir: Path | None, status: dict[str, Any]) -> None:
    if state_dir is None:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(status, indent=2))
    tmp.replace(state_dir / STATUS_FILE)


async def local_round(
    target: ScaleTarget,
    client: ManagementClient,
    http: httpx.AsyncClient,
    spec: PlatformSpec,
    state: ControlState,
    previous: dict[str, Any],
    flush_urls: Callable[[], list[str]],
    now: float,
) -> dict[str, Any]:
    """One round: recover the broker if needed, then scale; returns the status."""
    observed = await client.observe()
    actions, state.recovery = plan_recovery(observed, spec.recovery, now, state.recovery, TOPOLOGY)
    if actions:

        async def flush() -> str:
            return await post_flush(http, flush_urls())

        async def restart(service: str) -> str:
            await _maybe_await(target.restart_consumers(service))  # type: ignore[attr-defined]
            return f"restarted the {service} consumers"

        edges = RecoveryEdges(client, flush, restart if isinstance(target, RestartsConsumers) else None)
        outcomes = await execute(actions, edges, spec.recovery)
        for outcome in outcomes:
            (log.info if outcome.ok else log.warning)("recovery: %s", outcome.detail)
        state.last_action = describe(actions[-1])
        state.last_recovery = {"time": utc_now(), "actions": [o.detail for o in outcomes]}
        observed = await client.observe()

    metrics = state.window.observe(await scrape(http, target.instance_urls(), now, spec.metrics_path))
    current = int(target.current_replicas())
    decision = decide(
        transaction_readings(metrics, spec.targets), current, spec.scaling, state.histories.get("transactions", ()), now
    )
    state.histories["transactions"] = decision.history
    if spec.scaling_enabled and decision.changes:
        await _maybe_await(target.set_replicas(decision.desired))
        log.info("transactions: %s", decision.reason)
        state.last_action = f"scaled transactions {decision.current}->{decision.desired}"
        state.last_scale_time = utc_now()
    return build_status(
        decision=decision,
        scaling_enabled=spec.scaling_enabled,
        metrics=metrics,
        broker=observed,
        queues=spec.queues,
        previous=previous,
        now=utc_now(),
        last_action=state.last_action,
        last_recovery=state.last_recovery,
        last_scale_time=state.last_scale_time,
    )


def _admin_headers(folder: Path | None) -> dict[str, str]:
    """The services' ``/internal/outbox/flush`` wants the admin key (without it: 401, nothing flushed):
    ``NEWBANK_ADMIN_TOKEN``, else the ``admin-token`` file that ``newbank up`` keeps in the state folder."""
    token = os.environ.get("NEWBANK_ADMIN_TOKEN", "").strip()
    if not token and folder is not None and (folder / "admin-token").exists():
        token = (folder / "admin-token").read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


async def run_local_operator(
    target: ScaleTarget,
    rabbit_management_url: str,
    rabbit_user: str,
    rabbit_password: str,
    state_dir: Path | str | None = None,
    *,
    spec: Mapping[str, Any] | None = None,
    flush_urls: Callable[[], list[str]] | None = None,
) -> None:
    """Never returns: one round every ``syncPeriodSeconds`` until cancelled."""
    folder = Path(state_dir) if state_dir is not None else None
    state = ControlState()
    status: dict[str, Any] = {}
    if flush_urls is None:
        flush_urls = target.all_instance_urls if isinstance(target, ListsAllInstances) else target.instance_urls
    async with (
        ManagementClient(rabbit_management_url, rabbit_user, rabbit_password) as client,
        httpx.AsyncClient(timeout=3.0, headers=_admin_headers(folder)) as http,
    ):
        while True:
            policy = load_spec(folder, spec)
            try:
                status = await local_round(target, client, http, policy, state, status, flush_urls, time.monotonic())
                _write_status(folder, status)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop outlives a bad round; the runtime logs it
                log.exception("operator round failed")
            await asyncio.sleep(policy.sync_period_s)
