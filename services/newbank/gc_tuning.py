"""The garbage collector of a long-running service, set for an event loop full of requests.

CPython's defaults (a young collection every 700 net container allocations; a full one scanning
every tracked object) suit short scripts. In a transaction instance under 1000 users
(``loadtest/README.md``, eighth session) collections took ~11 % of its CPU, and each full one held
the event loop for ~60 ms of CPU — more than its 50 ms of quota per 100 ms period — mostly
re-scanning the ~80k objects that start-up made (FastAPI's routes and schemas, pydantic's
validators, the imported modules), which live as long as the process.

So once start-up is over those objects move to the permanent generation (``gc.freeze``), never to
be scanned again, and a young collection waits for ``gen0_threshold`` net allocations. Reference
counting still frees at once everything that is not in a cycle, and cycles are still collected.
``/metrics`` shows the settings in force and the time the collector takes.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Counter, Gauge

GC_FROZEN = Gauge("newbank_gc_frozen_objects", "Objects in the collector's permanent generation (never scanned)")
GC_THRESHOLD = Gauge("newbank_gc_threshold", "The collector's thresholds", ["generation"])
GC_SECONDS = Counter("newbank_gc_seconds_total", "Time spent in garbage collections", ["generation"])

GC_FROZEN.set_function(gc.get_freeze_count)
for _generation in range(3):
    GC_THRESHOLD.labels(str(_generation)).set_function(lambda g=_generation: gc.get_threshold()[g])

_started: list[float] = [0.0]


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        GC_SECONDS.labels(str(info["generation"])).inc(time.perf_counter() - _started[0])


def tune_after_startup(*, freeze: bool, gen0_threshold: int) -> None:
    if freeze:
        gc.collect()  # start-up's garbage goes now rather than into the permanent generation
        gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)
