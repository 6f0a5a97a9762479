"""An in-process cache of rendered partner pages, dropped on ``partner.offer_changed``.

The listing is public and read-heavy; each instance keeps the JSON bytes it last answered per query
and serves them until an invalidation event arrives (a change is visible within the event's latency)
or the short TTL runs out (the safety net when an event is lost, e.g. during a broker restart, and for
offers whose window opens or closes by the clock).

Two details keep it correct under concurrency:
- one load per key at a time (``single flight``): a burst of misses costs one query, not hundreds;
- a generation counter: a load that started before a ``clear()`` does not store its (maybe stale)
  result afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable

from prometheus_client import Counter

CACHE_LOOKUPS = Counter("newbank_partners_cache_lookups_total", "Partner cache lookups", ["outcome"])


class PartnerCache:
    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[Hashable, tuple[float, bytes]] = {}
        self._loading: dict[Hashable, asyncio.Future[bytes]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        # Requests arriving from now on must not join a load that may have read the old state.
        self._loading.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> bytes:
        if not self.enabled:
            CACHE_LOOKUPS.labels("bypass").inc()
            return await load()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            CACHE_LOOKUPS.labels("hit").inc()
            return entry[1]
        pending = self._loading.get(key)
        if pending is not None:
            CACHE_LOOKUPS.labels("joined").inc()
            return await asyncio.shield(pending)
        CACHE_LOOKUPS.labels("miss").inc()
        generation = self.generation
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: joiners get it, nobody else needs to
            raise
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]
        future.set_result(value)
        if generation == self.generation:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl_s, value)
        return value
