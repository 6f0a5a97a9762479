"""The services' garbage-collector settings (newbank/gc_tuning.py), on this process's real collector.

Each test puts the collector back as it found it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from newbank.gc_tuning import _time_collections, tune_after_startup


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        while _time_collections in gc.callbacks:
            gc.callbacks.remove(_time_collections)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def _sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


def _seconds(generation: str) -> float:
    """Collection time so far (the counter has no sample until its first collection)."""
    return REGISTRY.get_sample_value("newbank_gc_seconds_total", {"generation": generation}) or 0.0


@pytest.mark.usefixtures("collector")
def test_startup_objects_are_frozen_and_young_collections_wait() -> None:
    gc.unfreeze()
    survivor = _Node()  # alive before the freeze, like start-up's routes and schemas
    tune_after_startup(freeze=True, gen0_threshold=5_000)
    assert gc.get_freeze_count() > 1_000
    # Frozen: in no generation that a collection scans any more.
    assert not any(o is survivor for o in gc.get_objects())
    assert gc.get_threshold()[0] == 5_000
    assert _sample("newbank_gc_threshold", generation="0") == 5_000
    assert _sample("newbank_gc_frozen_objects") == gc.get_freeze_count()


@pytest.mark.usefixtures("collector")
def test_cycles_made_after_startup_are_still_collected_and_timed() -> None:
    tune_after_startup(freeze=True, gen0_threshold=5_000)
    before = _seconds("2")
    garbage = _cycle()
    assert garbage() is not None  # a cycle: reference counting alone never frees it
    gc.collect()
    assert garbage() is None
    assert _seconds("2") > before


@pytest.mark.usefixtures("collector")
def test_without_freeze_nothing_is_frozen() -> None:
    gc.unfreeze()
    tune_after_startup(freeze=False, gen0_threshold=700)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == 700
