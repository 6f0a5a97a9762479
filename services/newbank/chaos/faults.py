"""The faults of issue 7, each injected into a running platform and followed to its recovery.

Every fault is an ``async def (run: Run) -> None`` that injects (SIGKILL by PID, or a broker stop),
marks on the run's timeline when the platform *detected* it (a role change, HAProxy taking a server
out, the controller restarting a process) and when it *recovered*, and leaves the platform whole
again (the old PostgreSQL node rejoined, the broker back), so that the next scenario starts healthy.

The controller's supervisor (``newbank.runtime.supervisor``) restarts a dead etcd, Patroni agent or
broker within a second. A scenario whose point is an outage longer than that (a node lost until the
replica is promoted, the broker down 30 s, the replica gone 10 s) *holds* the component for it
(``supervisor.hold``), and says in its timeline when it releases it; after a release it is the
supervisor, not the scenario, that starts a Patroni agent again.

Blocking calls (HTTP to Patroni, process checks) run in threads: the payment load shares the event
loop and must not stall.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import urllib.request
from collections.abc import Awaitable, Callable

from newbank.chaos.timeline import Run
from newbank.runtime import procs, supervisor
from newbank.runtime.instances import Instance, load_instances
from newbank.runtime.patroni_cluster import PatroniNode, PgCluster

Fault = Callable[[Run], Awaitable[None]]
BROKER_OUTAGE_S = 30.0
PATRONI_RESTART_AFTER_S = 15.0  # 1c: how long after the promotion the hold on the old primary's Patroni ends
HOLD_TTL_S = 300.0  # a hold outlives no scenario (and ends with the process that wrote it)


def _cluster(run: Run) -> PgCluster:
    return run.target.layout.pg_cluster()


def _hold(run: Run, component: str, reason: str) -> None:
    supervisor.hold(run.target.layout.home, component, reason, HOLD_TTL_S)
    run.mark(f"hold on {component}", f"the supervisor leaves it down: {reason}")


def _release(run: Run, component: str, detail: str = "the supervisor takes over") -> float:
    supervisor.release(run.target.layout.home, component)
    return run.mark(f"hold on {component} released", detail)


async def _supervisor_restarted(
    run: Run, node: PatroniNode, killed: int | None, since: float, timeout_s: float = 30
) -> None:
    """Wait for the controller's supervisor (not this scenario) to start ``node``'s Patroni again."""
    label = f"supervisor restarted patroni on {node.name}"
    if await run.wait_for(label, lambda: node.patroni_pid not in (None, killed), timeout_s, 0.1) is not None:
        run.facts[f"{label} s after release"] = round(run.marks[-1].at - since, 2)


def _accepts_writes(cluster: PgCluster, node: PatroniNode) -> bool:
    """The node's postgres itself says it takes writes (Patroni's REST answer may lag its restart)."""
    try:
        return _sql(cluster, node, "SELECT NOT pg_is_in_recovery()") is True
    except Exception:
        return False


def _sql(cluster: PgCluster, node: PatroniNode, query: str) -> object:
    """One value from ``node`` as the superuser (the runtime's psycopg2)."""
    import psycopg2

    conn = psycopg2.connect(cluster.superuser_dsn("postgres", node), connect_timeout=2)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


async def _rejoined(
    run: Run, cluster: PgCluster, node: PatroniNode, timeout_s: float = 90, since: float | None = None
) -> None:
    """The node streams again as a replica and is the synchronous standby (acknowledged = on two nodes).

    ``since``: a hold's release; the facts then also say how long after it each step came.
    """
    steps = [
        (f"{node.name} streaming as replica", node.is_replica, timeout_s),
        ("synchronous standby back", lambda: any(n.is_sync_standby() for n in cluster.nodes), 60),
    ]
    for label, predicate, limit in steps:
        if await run.wait_for(label, predicate, limit) is not None and since is not None:
            run.facts[f"{label} s after release"] = round(run.marks[-1].at - since, 2)


async def primary_postmaster(run: Run) -> None:
    """1a: SIGKILL of the primary's postmaster only; Patroni, still holding the leader key, restarts it."""
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.primary, 10)
    pid = node.postmaster_pid
    run.facts.update(node=node.name, killed_pid=pid)
    run.fault(f"kill -9 postmaster {pid} of primary {node.name}")
    procs.kill_pid(pid)
    await run.wait_for("postmaster restarted by patroni", lambda: node.postmaster_pid not in (None, pid), 60)
    await run.wait_for(f"{node.name} primary again (patroni)", node.is_primary, 60)
    await run.wait_for(f"{node.name} accepts writes", lambda: _accepts_writes(cluster, node), 60, 0.1)
    await run.wait_for("synchronous standby back", lambda: any(n.is_sync_standby() for n in cluster.nodes), 60)


async def primary_node(run: Run) -> None:
    """1b: the whole primary lost (SIGKILL of Patroni and postmaster): the replica is promoted once the
    leader key expires (Patroni ``ttl``); then the old node is started again and must rejoin."""
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.primary, 10)
    other = next(n for n in cluster.nodes if n is not node)
    killed = node.patroni_pid
    run.facts.update(node=node.name, killed_pid=[killed, node.postmaster_pid])
    component = f"patroni-{node.name}"
    # The node is lost (a machine gone has no supervisor): held until the replica has taken over.
    _hold(run, component, "chaos 1b: the node is lost until the replica is promoted")
    try:
        run.fault(f"kill -9 patroni {killed} and postmaster {node.postmaster_pid} of primary {node.name}")
        cluster.kill_node(node)
        await run.wait_for(f"{other.name} promoted", other.is_primary, 60)
        await run.wait_for(f"{other.name} accepts writes", lambda: _accepts_writes(cluster, other), 60, 0.1)
    finally:
        released = _release(run, component, "the node is back: the supervisor starts its Patroni")
    await _supervisor_restarted(run, node, killed, released)
    await _rejoined(run, cluster, node, since=released)


async def primary_patroni(run: Run) -> None:
    """1c: Patroni alone killed on the primary; its postmaster keeps running, unsupervised.

    Without a watchdog nothing stops that postmaster when the leader key expires and the replica is
    promoted, so for a while two nodes accept connections as read-write. Synchronous replication is
    what must keep it from *acknowledging* a write the new primary lacks: its commits wait for a
    standby that no longer follows it. To get that window at all, the agent is *held* down (the
    supervisor would otherwise start it again within a second, see ``primary_patroni_supervised``);
    the hold ends ``PATRONI_RESTART_AFTER_S`` after the promotion, and then the controller's
    supervisor — not this scenario — starts Patroni again: it finds the other leader, demotes its
    postgres and rewinds it into a replica.
    """
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.primary, 10)
    other = next(n for n in cluster.nodes if n is not node)
    postmaster, killed = node.postmaster_pid, node.patroni_pid
    run.facts.update(node=node.name, killed_pid=killed, orphan_postmaster=postmaster)
    component = f"patroni-{node.name}"
    _hold(run, component, "chaos 1c: old primary's agent kept down through the split")
    try:
        run.fault(f"kill -9 patroni {killed} of primary {node.name} (postmaster {postmaster} left running)")
        procs.kill_pid(killed)
        await run.wait_for(f"{other.name} promoted", other.is_primary, 60)
        run.facts["old postmaster alive at promotion"] = procs.pid_alive(postmaster)
        # Longer than the services' 10 s statement timeout: commits stuck on the old primary get cancelled
        # (and so committed locally) while it still takes connections — the window where it could lie.
        await asyncio.sleep(PATRONI_RESTART_AFTER_S)
        run.facts[f"old postmaster alive {PATRONI_RESTART_AFTER_S:.0f} s after promotion"] = procs.pid_alive(postmaster)
    finally:
        released = _release(run, component)
    await _supervisor_restarted(run, node, killed, released)
    await run.wait_for("old postmaster gone (demoted)", lambda: node.postmaster_pid != postmaster, 60)
    await _rejoined(run, cluster, node, since=released)


def _timeline(cluster: PgCluster, node: PatroniNode) -> object:
    return _sql(cluster, node, "SELECT timeline_id FROM pg_control_checkpoint()")


async def primary_patroni_supervised(run: Run) -> None:
    """1c+: Patroni alone killed on the primary, no hold: the supervisor starts it again within a second
    or two, long before the leader key's ttl (20 s) expires, so there is no failover at all — the agent
    takes its running postgres back, the replica keeps following it, and writes never stop."""
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.primary, 10)
    other = next(n for n in cluster.nodes if n is not node)
    postmasters = {n.name: n.postmaster_pid for n in cluster.nodes}
    timeline = await asyncio.to_thread(_timeline, cluster, node)
    killed = node.patroni_pid
    run.facts.update(node=node.name, killed_pid=killed, postmaster=postmasters[node.name], timeline=timeline)
    run.fault(f"kill -9 patroni {killed} of primary {node.name} (postmaster {postmasters[node.name]} left running)")
    procs.kill_pid(killed)
    await _supervisor_restarted(run, node, killed, run.fault_at, timeout_s=20)
    await run.wait_for(f"{node.name} leader again (lease renewed)", node.is_primary, 30)
    await run.wait_for("synchronous standby back", lambda: any(n.is_sync_standby() for n in cluster.nodes), 60)
    run.facts["failover"] = other.is_primary() or await asyncio.to_thread(_timeline, cluster, node) != timeline
    run.facts["postmasters unchanged"] = {n.name: n.postmaster_pid for n in cluster.nodes} == postmasters
    if run.facts["failover"] or not run.facts["postmasters unchanged"]:
        run.findings.append(f"the agent's restart was not transparent: {run.facts}")


def _queues(run: Run) -> dict[str, dict[str, int]]:
    rabbit = run.target.layout.rabbitmq()
    req = urllib.request.Request(f"{rabbit.management_url}/api/queues")
    token = base64.b64encode(f"{rabbit.user}:{rabbit.password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return {
            q["name"]: {k: int(q.get(k, 0) or 0) for k in ("messages", "messages_unacknowledged", "consumers")}
            for q in json.loads(resp.read())
        }


def _consumers_back(run: Run) -> bool:
    queues = _queues(run)
    return all(
        queues.get(name, {}).get("consumers", 0) > 0 for name in ("cashback.payment-events", "partners.merchant-events")
    )


def broker_outage(empty: bool) -> Fault:
    """2: RabbitMQ stopped for 30 s, then started again — with its data, or with its data folder lost."""

    async def fault(run: Run) -> None:
        rabbit = run.target.layout.rabbitmq()
        run.facts.update(killed_pid=rabbit.pid, outage_s=BROKER_OUTAGE_S, started_empty=empty)
        # A controlled outage: held, or the supervisor would start the broker again at once.
        _hold(run, "rabbitmq", f"chaos 2{'b' if empty else 'a'}: broker down {BROKER_OUTAGE_S:.0f} s")
        try:
            run.fault(f"rabbitmq {rabbit.pid} stopped for {BROKER_OUTAGE_S:.0f} s")
            await asyncio.to_thread(rabbit.stop)
            run.mark("rabbitmq down")
            await asyncio.sleep(max(0.0, BROKER_OUTAGE_S - run.since_fault()))
            run.mark("rabbitmq starting", "with an empty data folder" if empty else "with its data")
            await asyncio.to_thread(rabbit.start, empty=empty)
            run.facts["broker_back_at"] = run.mark("rabbitmq back")
        finally:
            _release(run, "rabbitmq")
        await run.wait_for("consumers re-attached", lambda: _consumers_back(run), 60)

    return fault


def _instances(run: Run, service: str) -> list[Instance]:
    return [i for i in load_instances(run.target.layout) if i.service == service]


def _haproxy_status(run: Run, service: str, name: str) -> str:
    return run.target.layout.haproxy().server_states(service).get(name, {}).get("status", "absent")


def _back(run: Run, victim: Instance) -> bool:
    now = next((i for i in _instances(run, victim.service) if i.name == victim.name), None)
    return bool(now and now.pid != victim.pid and now.alive() and now.registered and now.probe("/readyz"))


async def transaction_instance(run: Run) -> None:
    """3: SIGKILL of one transaction-service instance; HAProxy takes it out, the controller restarts it."""
    instances = _instances(run, "transactions")
    victim = instances[0]
    run.facts.update(killed_pid=victim.pid, instance=victim.name, instances_before=len(instances))
    run.fault(f"kill -9 {victim.name} (pid {victim.pid})")
    procs.kill_pid(victim.pid)
    # With its CPU guaranteed, the instance can be back before HAProxy's second failed check (fall 2):
    # then HAProxy never shows it down (this mark then says "out of rotation or replaced"), and the
    # requests retried by HAProxy (retry-on conn-failure) lost nothing.
    await run.wait_for(
        "haproxy marked it down",
        lambda: not _haproxy_status(run, "transactions", victim.name).startswith("UP") or _back(run, victim),
        10,
        0.1,
    )
    await run.wait_for("controller restarted it", lambda: _back(run, victim), 90)
    await run.wait_for(
        "haproxy sends to it again", lambda: _haproxy_status(run, "transactions", victim.name).startswith("UP"), 30
    )
    run.facts["instances_after"] = len([i for i in _instances(run, "transactions") if i.alive()])


async def cashback_consumer(run: Run) -> None:
    """4: the cashback consumer killed mid-batch.

    To be sure the kill lands while a batch is in its hands, the instance is first frozen (SIGSTOP)
    for 6 s under load so a backlog builds up, then thawed, and SIGKILLed as soon as it is consuming
    again — with messages delivered to it and not yet acknowledged. RabbitMQ redelivers those to the
    restarted instance; the inbox must make every redelivery a no-op.
    """
    victim = _instances(run, "cashback")[0]
    run.facts.update(killed_pid=victim.pid, instance=victim.name)
    run.fault(f"SIGSTOP {victim.name} (pid {victim.pid}) for 6 s to build a backlog")
    _signal(victim.pid, "SIGSTOP")
    await asyncio.sleep(6)
    backlog = (await asyncio.to_thread(_queues, run)).get("cashback.payment-events", {})
    run.mark("backlog built", f"{backlog}")
    _signal(victim.pid, "SIGCONT")
    run.mark("thawed")
    unacked = 0
    for _ in range(40):  # catch it with a batch in flight
        state = (await asyncio.to_thread(_queues, run)).get("cashback.payment-events", {})
        unacked = state.get("messages_unacknowledged", 0)
        if unacked > 0:
            break
        await asyncio.sleep(0.05)
    procs.kill_pid(victim.pid)
    run.facts["unacked_at_kill"] = unacked
    run.mark("kill -9 mid-batch", f"{unacked} messages delivered and not yet acknowledged")
    if unacked == 0:
        run.findings.append("could not catch the consumer with unacknowledged messages (kill was not mid-batch)")
    await run.wait_for("controller restarted it", lambda: _back(run, victim), 90)
    await run.wait_for("consumers re-attached", lambda: _consumers_back(run), 60)
    await asyncio.sleep(2)  # the redeliveries arrive first; give them a moment
    run.facts["redeliveries found in the inbox"] = await asyncio.to_thread(_duplicates_seen, run, victim)


def _duplicates_seen(run: Run, victim: Instance) -> int:
    """The restarted consumer's count of events it found already applied (its /metrics)."""
    now = next(i for i in _instances(run, victim.service) if i.name == victim.name)
    with urllib.request.urlopen(f"{now.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("newbank_events_consumed_total{") and 'outcome="duplicate"' in line
    )


def _signal(pid: int | None, name: str) -> None:
    if procs.pid_alive(pid):
        assert pid is not None
        os.kill(pid, getattr(signal, name))


async def replica(run: Run) -> None:
    """5: the replica lost (Patroni and postmaster): writes go on (synchronous mode is not strict, so the
    primary stops waiting for it), lists fall back to the primary; restarted, it catches up."""
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.replica, 10)
    primary = next(n for n in cluster.nodes if n is not node)
    run.facts.update(node=node.name, killed_pid=[node.patroni_pid, node.postmaster_pid])
    component = f"patroni-{node.name}"
    _hold(run, component, "chaos 5: the replica stays lost for 10 s")
    try:
        run.fault(f"kill -9 patroni {node.patroni_pid} and postmaster {node.postmaster_pid} of replica {node.name}")
        cluster.kill_node(node)
        # Patroni (synchronous_mode_strict off) empties synchronous_standby_names on the primary, so its
        # commits stop waiting for the lost standby; until then they would hang.
        await run.wait_for(
            "primary no longer waits for a standby",
            lambda: _sql(cluster, primary, "SHOW synchronous_standby_names") == "",
            60,
        )
        await asyncio.sleep(max(0.0, 10 - run.since_fault()))
        run.facts["primary unchanged"] = primary.is_primary()
        lsn = await asyncio.to_thread(_sql, cluster, primary, "SELECT pg_current_wal_lsn()::text")
        run.mark("restarting the replica", f"{node.name}; primary at WAL {lsn}")
        await asyncio.to_thread(cluster.start_node, node)
    finally:
        _release(run, component)
    await _rejoined(run, cluster, node)
    caught_up = f"SELECT bool_or(replay_lsn >= '{lsn}'::pg_lsn) FROM pg_stat_replication"
    await run.wait_for(
        "replica caught up (replayed past the restart point)", lambda: _sql(cluster, primary, caught_up) is True, 60
    )


FAULTS: dict[str, Fault] = {
    "primary-postmaster": primary_postmaster,
    "primary-node": primary_node,
    "primary-patroni": primary_patroni,
    "primary-patroni-supervised": primary_patroni_supervised,
    "broker-outage": broker_outage(empty=False),
    "broker-outage-empty": broker_outage(empty=True),
    "transaction-instance": transaction_instance,
    "cashback-consumer": cashback_consumer,
    "replica": replica,
}
