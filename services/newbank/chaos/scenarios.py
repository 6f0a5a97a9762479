"""The scenarios of issue 7 and the one way to run any of them.

``run_scenario``: wait until the platform is healthy → payment load (with same-key retries) for a
warm-up → the fault, followed to its recovery → load for a while longer → stop the load (payments in
flight still get their answer) → wait for cashback to settle → the checks → wait until healthy again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from newbank.chaos import faults
from newbank.chaos.checks import run_checks
from newbank.chaos.health import wait_healthy
from newbank.chaos.load import PaymentLoad
from newbank.chaos.report import Result, figures
from newbank.chaos.timeline import Run
from newbank.chaos.world import Target, World, load_or_create_world


@dataclass(frozen=True)
class Scenario:
    name: str
    issue_ref: str
    title: str
    fault: faults.Fault
    unavailability_limit_s: float | None = None  # issue 7's target for the write unavailability window
    drain_limit_s: float | None = None  # broker back → last cashback credited
    after_s: float = 8.0  # load kept after recovery


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "primary-postmaster",
            "1a",
            "kill -9 the primary's postmaster (Patroni restarts it in place)",
            faults.primary_postmaster,
            unavailability_limit_s=5.0,
        ),
        Scenario(
            "primary-node",
            "1b",
            "kill -9 the whole primary node (Patroni + postmaster): replica promoted",
            faults.primary_node,
            unavailability_limit_s=30.0,
        ),
        Scenario(
            "primary-patroni",
            "1c",
            "kill -9 Patroni alone on the primary, held down through a failover; then the supervisor restarts it",
            faults.primary_patroni,
        ),
        Scenario(
            "primary-patroni-supervised",
            "1c+",
            "kill -9 Patroni alone on the primary; the supervisor "
            "restarts it before its leader key expires (no failover)",
            faults.primary_patroni_supervised,
            unavailability_limit_s=1.0,
        ),
        Scenario(
            "broker-outage",
            "2a",
            "RabbitMQ down 30 s, back with its data",
            faults.broker_outage(empty=False),
            drain_limit_s=60.0,
        ),
        Scenario(
            "broker-outage-empty",
            "2b",
            "RabbitMQ down 30 s, back with its data folder lost",
            faults.broker_outage(empty=True),
            drain_limit_s=60.0,
        ),
        Scenario("transaction-instance", "3", "kill -9 a transaction-service instance", faults.transaction_instance),
        Scenario("cashback-consumer", "4", "kill -9 the cashback consumer mid-batch", faults.cashback_consumer),
        Scenario("replica", "5", "kill -9 the replica (Patroni + postmaster), then bring it back", faults.replica),
    )
}
ALIASES = {s.issue_ref: s.name for s in SCENARIOS.values()}


def resolve(name: str) -> Scenario:
    return SCENARIOS[ALIASES.get(name, name)]


async def run_scenario(
    target: Target,
    name: str,
    *,
    world: World | None = None,
    workers: int = 20,
    warmup_s: float = 5.0,
    settle_timeout_s: float = 90.0,
    say: Callable[[str], None] = print,
) -> Result:
    scenario = resolve(name)
    layout = target.layout
    say(f"chaos {scenario.name} ({scenario.issue_ref}): {scenario.title}")
    healthy_s = await asyncio.to_thread(wait_healthy, layout, 180)
    say(f"  platform healthy (waited {healthy_s:.1f} s)")
    world = world or await asyncio.to_thread(load_or_create_world, target)
    run = Run(target, say=say)
    load = PaymentLoad(target, world, uuid.uuid4().hex[:8], workers=workers)
    load_task = asyncio.create_task(load.run())
    run.mark("load started", f"{workers} merchants, same-key retries")
    try:
        await asyncio.sleep(warmup_s)
        await scenario.fault(run)
        recovered_at = run.mark("recovered")
        await asyncio.sleep(scenario.after_s)
    finally:
        load.stop()
        run.mark("load stopping", "payments in flight still get their answer")
        await load_task
    run.mark("load stopped", f"{len(load.orders)} payments, {len(load.acknowledged)} acknowledged")
    killed = run.facts.get("killed_pid")
    killed_pids = [p for p in (killed if isinstance(killed, list) else [killed]) if isinstance(p, int)]
    verdict = await run_checks(
        target, world, load, around=(run.fault_at, recovered_at), killed=killed_pids, settle_timeout_s=settle_timeout_s
    )
    run.mark("checks done", "ok" if verdict.ok else "FAILED")
    try:
        await asyncio.to_thread(wait_healthy, layout, 120)
        run.mark("platform healthy again")
    except TimeoutError as exc:
        run.findings.append(str(exc))
    result = Result(scenario.name, scenario.title, run, load, verdict, figures(run, load, verdict))
    result.targets["lost"] = (0, verdict.lost)
    result.targets["duplicates"] = (0, verdict.duplicates)
    result.targets["payments failed for good"] = (0, len(load.unresolved))
    if scenario.unavailability_limit_s is not None:
        window = load.unavailability(run.fault_at)
        measured = round(window[2], 2) if window else 0.0
        result.targets["write unavailability s"] = (scenario.unavailability_limit_s, measured)
    if scenario.drain_limit_s is not None:
        drained = result.figures.get("broker back → last cashback credited s")
        result.targets["broker back → last cashback s"] = (scenario.drain_limit_s, drained)
    return result


def run_blocking(target: Target, name: str, **kwargs: object) -> Result:
    started = time.time()
    result = asyncio.run(run_scenario(target, name, **kwargs))  # type: ignore[arg-type]
    result.figures["scenario wall time s"] = round(time.time() - started, 1)
    return result
