"""The faults of issue 7, each injected into a running platform and followed to its recovery.

Every fault is an ``async def (run: Run) -> None`` that injects (SIGKILL by PID, or a broker stop),
marks on the run's timeline when the platform *detected* it (a role change, HAProxy taking a server
out, the controller restarting a process) and when it *recovered*, and leaves the platform whole
again (the old PostgreSQL node restarted so it rejoins, the broker back), so that the next scenario
starts healthy. Blocking calls (HTTP to Patroni, process checks) run in threads: the payment load
shares the event loop and must not stall.
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
from newbank.runtime import procs
from newbank.runtime.instances import Instance, load_instances
from newbank.runtime.patroni_cluster import PatroniNode, PgCluster

Fault = Callable[[Run], Awaitable[None]]
BROKER_OUTAGE_S = 30.0
PATRONI_RESTART_AFTER_S = 15.0


def _cluster(run: Run) -> PgCluster:
    return run.target.layout.pg_cluster()


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


async def _rejoined(run: Run, cluster: PgCluster, node: PatroniNode, timeout_s: float = 90) -> None:
    """The node streams again as a replica and is the synchronous standby (acknowledged = on two nodes)."""
    await run.wait_for(f"{node.name} streaming as replica", node.is_replica, timeout_s)
    await run.wait_for("synchronous standby back", lambda: any(n.is_sync_standby() for n in cluster.nodes), 60)


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
    run.facts.update(node=node.name, killed_pid=[node.patroni_pid, node.postmaster_pid])
    run.fault(f"kill -9 patroni {node.patroni_pid} and postmaster {node.postmaster_pid} of primary {node.name}")
    cluster.kill_node(node)
    await run.wait_for(f"{other.name} promoted", other.is_primary, 60)
    await run.wait_for(f"{other.name} accepts writes", lambda: _accepts_writes(cluster, other), 60, 0.1)
    run.mark("restarting the lost node", node.name)
    await asyncio.to_thread(cluster.start_node, node)
    await _rejoined(run, cluster, node)


async def primary_patroni(run: Run) -> None:
    """1c: Patroni alone killed on the primary; its postmaster keeps running, unsupervised.

    Without a watchdog nothing stops that postmaster when the leader key expires and the replica is
    promoted, so for a while two nodes accept connections as read-write. Synchronous replication is
    what must keep it from *acknowledging* a write the new primary lacks: its commits wait for a
    standby that no longer follows it. After the promotion we hold the situation for a few seconds
    (that is the dangerous window), then start Patroni again on the old node, as its supervisor would:
    it finds the other leader, demotes its postgres and rewinds it into a replica.
    """
    cluster = _cluster(run)
    node = await asyncio.to_thread(cluster.primary, 10)
    other = next(n for n in cluster.nodes if n is not node)
    postmaster = node.postmaster_pid
    run.facts.update(node=node.name, killed_pid=node.patroni_pid, orphan_postmaster=postmaster)
    run.fault(f"kill -9 patroni {node.patroni_pid} of primary {node.name} (postmaster {postmaster} left running)")
    procs.kill_pid(node.patroni_pid)
    await run.wait_for(f"{other.name} promoted", other.is_primary, 60)
    run.facts["old postmaster alive at promotion"] = procs.pid_alive(postmaster)
    # Longer than the services' 10 s statement timeout: commits stuck on the old primary get cancelled
    # (and so committed locally) while it still takes connections — the window where it could lie.
    await asyncio.sleep(PATRONI_RESTART_AFTER_S)
    run.facts[f"old postmaster alive {PATRONI_RESTART_AFTER_S:.0f} s after promotion"] = procs.pid_alive(postmaster)
    run.mark("restarting patroni on the old primary", node.name)
    await asyncio.to_thread(cluster.start_node, node)
    await run.wait_for("old postmaster gone (demoted)", lambda: node.postmaster_pid != postmaster, 60)
    await _rejoined(run, cluster, node)


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
    return all(queues.get(name, {}).get("consumers", 0) > 0
               for name in ("cashback.payment-events", "partners.merchant-events"))


def broker_outage(empty: bool) -> Fault:
    """2: RabbitMQ stopped for 30 s, then started again — with its data, or with its data folder lost."""

    async def fault(run: Run) -> None:
        rabbit = run.target.layout.rabbitmq()
        run.facts.update(killed_pid=rabbit.pid, outage_s=BROKER_OUTAGE_S, started_empty=empty)
        run.fault(f"rabbitmq {rabbit.pid} stopped for {BROKER_OUTAGE_S:.0f} s")
        await asyncio.to_thread(rabbit.stop)
        run.mark("rabbitmq down")
        await asyncio.sleep(max(0.0, BROKER_OUTAGE_S - run.since_fault()))
        run.mark("rabbitmq starting", "with an empty data folder" if empty else "with its data")
        await asyncio.to_thread(rabbit.start, empty=empty)
        run.facts["broker_back_at"] = run.mark("rabbitmq back")
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
    await run.wait_for("haproxy marked it down",
                       lambda: not _haproxy_status(run, "transactions", victim.name).startswith("UP"), 10, 0.1)
    await run.wait_for("controller restarted it", lambda: _back(run, victim), 90)
    await run.wait_for("haproxy sends to it again",
                       lambda: _haproxy_status(run, "transactions", victim.name).startswith("UP"), 30)
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
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("newbank_events_consumed_total{") and 'outcome="duplicate"' in line)


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
    run.fault(f"kill -9 patroni {node.patroni_pid} and postmaster {node.postmaster_pid} of replica {node.name}")
    cluster.kill_node(node)
    # Patroni (synchronous_mode_strict off) empties synchronous_standby_names on the primary, so its
    # commits stop waiting for the lost standby; until then they would hang.
    await run.wait_for("primary no longer waits for a standby",
                       lambda: _sql(cluster, primary, "SHOW synchronous_standby_names") == "", 60)
    await asyncio.sleep(max(0.0, 10 - run.since_fault()))
    run.facts["primary unchanged"] = primary.is_primary()
    lsn = await asyncio.to_thread(_sql, cluster, primary, "SELECT pg_current_wal_lsn()::text")
    run.mark("restarting the replica", f"{node.name}; primary at WAL {lsn}")
    await asyncio.to_thread(cluster.start_node, node)
    await _rejoined(run, cluster, node)
    caught_up = f"SELECT bool_or(replay_lsn >= '{lsn}'::pg_lsn) FROM pg_stat_replication"
    await run.wait_for("replica caught up (replayed past the restart point)",
                       lambda: _sql(cluster, primary, caught_up) is True, 60)


FAULTS: dict[str, Fault] = {
    "primary-postmaster": primary_postmaster,
    "primary-node": primary_node,
    "primary-patroni": primary_patroni,
    "broker-outage": broker_outage(empty=False),
    "broker-outage-empty": broker_outage(empty=True),
    "transaction-instance": transaction_instance,
    "cashback-consumer": cashback_consumer,
    "replica": replica,
}
