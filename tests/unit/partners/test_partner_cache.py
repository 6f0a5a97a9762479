"""The partners cache: hits, TTL, single flight, and no stale store after an invalidation."""

from __future__ import annotations

import asyncio

from newbank.partners.cache import PartnerCache


async def test_hit_until_ttl_then_reload() -> None:
    cache = PartnerCache(ttl_s=0.2)
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        return str(loads).encode()

    assert await cache.get("k", load) == b"1"
    assert await cache.get("k", load) == b"1"
    await asyncio.sleep(0.25)
    assert await cache.get("k", load) == b"2"


async def test_disabled_cache_always_loads() -> None:
    cache = PartnerCache(ttl_s=0)
    calls = []

    async def load() -> bytes:
        calls.append(1)
        return b"x"

    for _ in range(3):
        await cache.get("k", load)
    assert len(calls) == 3 and len(cache) == 0


async def test_concurrent_misses_load_once() -> None:
    cache = PartnerCache(ttl_s=10)
    started = 0

    async def load() -> bytes:
        nonlocal started
        started += 1
        await asyncio.sleep(0.05)
        return b"page"

    results = await asyncio.gather(*(cache.get("k", load) for _ in range(50)))
    assert results == [b"page"] * 50 and started == 1


async def test_load_overtaken_by_clear_is_not_stored() -> None:
    cache = PartnerCache(ttl_s=10)
    release = asyncio.Event()

    async def slow_old() -> bytes:
        await release.wait()
        return b"old"

    async def fresh() -> bytes:
        return b"new"

    pending = asyncio.create_task(cache.get("k", slow_old))
    await asyncio.sleep(0)
    cache.clear()  # the offer changed while the old state was being read
    assert await cache.get("k", fresh) == b"new"  # does not join the old load
    release.set()
    assert await pending == b"old"
    assert await cache.get("k", fresh) == b"new"  # the old result was not stored over it


async def test_failed_load_is_not_cached() -> None:
    cache = PartnerCache(ttl_s=10)

    async def broken() -> bytes:
        raise ConnectionError("db down")

    async def fine() -> bytes:
        return b"ok"

    try:
        await cache.get("k", broken)
    except ConnectionError:
        pass
    assert await cache.get("k", fine) == b"ok"
