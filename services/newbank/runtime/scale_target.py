"""What the operator's scaling loop sees of the local platform, and the wanted instance counts.

``LocalScaleTarget`` is the local twin of a Deployment's scale subresource: the operator reads the
instances' URLs (for their ``/metrics``) and the replica count, and sets a new count; the controller
does the rest. ``newbank scale`` writes the same ``desired.json``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from newbank.runtime.layout import DEFAULT_REPLICAS, MAX_INSTANCES, Layout


class ScaleTarget(Protocol):
    def instance_urls(self) -> list[str]: ...
    def all_instance_urls(self) -> list[str]:
        """Every service's serving instances (the operator asks all of them to flush their outbox)."""
        return [str(getattr(i, "url")) for i in self._instances() if getattr(i, "registered", False)]  # noqa: B009

    async def restart_consumers(self, service: str) -> None:
        """The local twin of a rollout restart: each instance of ``service`` in turn, drained first."""
        if self._restart is not None:
            await self._restart(service)

    def current_replicas(self) -> int: ...
    def set_replicas(self, n: int) -> None: ...


def read_desired(layout: Layout) -> dict[str, int]:
    try:
        data = json.loads(layout.desired_file.read_text())
    except (OSError, ValueError):
        return dict(DEFAULT_REPLICAS)
    return {**DEFAULT_REPLICAS, **{k: int(v) for k, v in data.items()}}


def write_desired(layout: Layout, desired: dict[str, int]) -> None:
    layout.home.mkdir(parents=True, exist_ok=True)
    tmp = layout.desired_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(desired))
    tmp.replace(layout.desired_file)


def set_desired_replicas(layout: Layout, service: str, n: int) -> int:
    """Clamp ``n`` to 1..max and record it; returns the count actually wanted."""
    n = max(1, min(int(n), MAX_INSTANCES[service]))
    desired = read_desired(layout)
    desired[service] = n
    write_desired(layout, desired)
    return n


class LocalScaleTarget:
    """The transaction service (or another) of one local platform, as a scale target."""

    def __init__(
        self,
        layout: Layout,
        service: str,
        instances: Callable[[], Sequence[object]],
        restart: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.layout = layout
        self.service = service
        self._instances = instances
        self._restart = restart

    def _mine(self) -> list[object]:
        return [i for i in self._instances() if getattr(i, "service", None) == self.service]

    def instance_urls(self) -> list[str]:
        """Direct base URLs of the instances that serve traffic now (registered in HAProxy)."""
        return [str(getattr(i, "url")) for i in self._mine() if getattr(i, "registered", False)]  # noqa: B009

    def all_instance_urls(self) -> list[str]:
        """Every service's serving instances (the operator asks all of them to flush their outbox)."""
        return [str(getattr(i, "url")) for i in self._instances() if getattr(i, "registered", False)]  # noqa: B009

    async def restart_consumers(self, service: str) -> None:
        """The local twin of a rollout restart: each instance of ``service`` in turn, drained first."""
        if self._restart is not None:
            await self._restart(service)

    def current_replicas(self) -> int:
        return read_desired(self.layout)[self.service]

    def set_replicas(self, n: int) -> None:
        set_desired_replicas(self.layout, self.service, n)
