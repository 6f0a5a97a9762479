"""RabbitMQ's management HTTP API: what the operator observes and the few writes recovery needs.

HTTP rather than AMQP so that the operator needs no channel state and a broker outage is just a failed
request. Everything the topology holds comes from ``newbank.messaging.topology`` (one source of truth,
also declared by the services over AMQP); declaring here mirrors ``newbank.messaging.broker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from newbank.messaging.topology import TOPOLOGY, Topology

Binding = tuple[str, str, str]  # (exchange, queue, routing key)


class BrokerUnavailable(Exception):
    """The management API could not be reached or answered with a server error."""


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    publish_rate: float = 0.0
    deliver_rate: float = 0.0

    @property
    def backlog(self) -> int:
        return self.ready + self.unacked


@dataclass(frozen=True)
class BrokerObservation:
    """What the broker looks like now; ``reachable`` False means nothing else is known."""

    reachable: bool
    queues: dict[str, QueueStats] = field(default_factory=dict)
    exchanges: frozenset[str] = frozenset()
    bindings: frozenset[Binding] = frozenset()
    error: str = ""


def expected_bindings(topology: Topology = TOPOLOGY) -> set[Binding]:
    bindings: set[Binding] = set()
    for spec in topology.queues:
        bindings |= {(topology.exchange, spec.name, key) for key in spec.routing_keys}
        bindings.add((topology.dead_letter_exchange, spec.dead_letter_queue, spec.name))
    return bindings


def missing_topology(observed: BrokerObservation, topology: Topology = TOPOLOGY) -> list[str]:
    """Names of the exchanges, queues and bindings of the topology that the broker lacks."""
    missing = [name for name in (topology.exchange, topology.dead_letter_exchange) if name not in observed.exchanges]
    missing += [name for name in topology.all_queue_names() if name not in observed.queues]
    missing += [f"{e}->{q}:{k}" for (e, q, k) in sorted(expected_bindings(topology) - observed.bindings)]
    return missing


class ManagementClient:
    """A thin async client of the management API for one vhost."""

    def __init__(self, base_url: str, user: str, password: str, vhost: str = "/", timeout_s: float = 5.0):
        self.vhost = quote(vhost, safe="")
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), auth=(user, password), timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ManagementClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._http.request(method, "/api" + path, json=json)
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise BrokerUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        response.raise_for_status()
        return response.json() if response.content else None

    async def queues(self) -> dict[str, QueueStats]:
        columns = "name,messages_ready,messages_unacknowledged,consumers,message_stats"
        rows = await self._request("GET", f"/queues/{self.vhost}?columns={columns}")
        return {row["name"]: _queue_stats(row) for row in rows}

    async def exchanges(self) -> frozenset[str]:
        rows = await self._request("GET", f"/exchanges/{self.vhost}?columns=name")
        return frozenset(row["name"] for row in rows)

    async def bindings(self) -> frozenset[Binding]:
        rows = await self._request("GET", f"/bindings/{self.vhost}")
        return frozenset(
            (row["source"], row["destination"], row["routing_key"])
            for row in rows
            if row.get("destination_type") == "queue" and row["source"]
        )

    async def observe(self) -> BrokerObservation:
        """Queues, exchanges and bindings in one go; an unreachable broker is an observation too."""
        try:
            return BrokerObservation(
                reachable=True,
                queues=await self.queues(),
                exchanges=await self.exchanges(),
                bindings=await self.bindings(),
            )
        except BrokerUnavailable as exc:
            return BrokerObservation(reachable=False, error=str(exc))

    async def declare_exchange(self, name: str, kind: str) -> None:
        body = {"type": kind, "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
        await self._request("PUT", f"/exchanges/{self.vhost}/{quote(name, safe='')}", body)

    async def declare_queue(self, name: str, arguments: dict[str, object]) -> None:
        body = {"durable": True, "auto_delete": False, "arguments": arguments}
        await self._request("PUT", f"/queues/{self.vhost}/{quote(name, safe='')}", body)

    async def delete_queue(self, name: str) -> None:
        await self._request("DELETE", f"/queues/{self.vhost}/{quote(name, safe='')}")

    async def bind(self, exchange: str, queue: str, routing_key: str) -> None:
        path = f"/bindings/{self.vhost}/e/{quote(exchange, safe='')}/q/{quote(queue, safe='')}"
        await self._request("POST", path, {"routing_key": routing_key, "arguments": {}})

    async def take_messages(self, queue: str, count: int) -> list[dict[str, Any]]:
        """Remove up to ``count`` messages from the head of ``queue`` (payloads base64-encoded)."""
        body = {"count": count, "ackmode": "ack_requeue_false", "encoding": "base64", "truncate": 50_000_000}
        return await self._request("POST", f"/queues/{self.vhost}/{quote(queue, safe='')}/get", body) or []

    async def publish(self, exchange: str, routing_key: str, payload_b64: str, properties: dict[str, Any]) -> bool:
        """Publish one message; True when the broker routed it to at least one queue."""
        name = quote(exchange, safe="") if exchange else "amq.default"
        body = {
            "routing_key": routing_key,
            "payload": payload_b64,
            "payload_encoding": "base64",
            "properties": properties,
        }
        answer = await self._request("POST", f"/exchanges/{self.vhost}/{name}/publish", body)
        return bool(answer and answer.get("routed"))


def _queue_stats(row: dict[str, Any]) -> QueueStats:
    stats = row.get("message_stats") or {}
    return QueueStats(
        name=row["name"],
        ready=int(row.get("messages_ready") or 0),
        unacked=int(row.get("messages_unacknowledged") or 0),
        consumers=int(row.get("consumers") or 0),
        publish_rate=float((stats.get("publish_details") or {}).get("rate", 0.0)),
        deliver_rate=float((stats.get("deliver_get_details") or {}).get("rate", 0.0)),
    )


async def declare_topology(client: ManagementClient, topology: Topology = TOPOLOGY) -> list[str]:
    """Declare everything of the topology (idempotent); returns what was declared, in order."""
    done: list[str] = []
    await client.declare_exchange(topology.exchange, "topic")
    await client.declare_exchange(topology.dead_letter_exchange, "direct")
    done += [topology.exchange, topology.dead_letter_exchange]
    for spec in topology.queues:
        await client.declare_queue(spec.name, spec.arguments())
        for key in spec.routing_keys:
            await client.bind(topology.exchange, spec.name, key)
        await client.declare_queue(spec.dead_letter_queue, spec.dead_letter_arguments())
        await client.bind(topology.dead_letter_exchange, spec.dead_letter_queue, spec.name)
        await client.declare_queue(spec.retry_queue, spec.retry_arguments())
        done += [spec.name, spec.dead_letter_queue, spec.retry_queue]
    return done
