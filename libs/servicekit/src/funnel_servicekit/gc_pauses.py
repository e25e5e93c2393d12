"""Garbage-collector pauses: measured for /metrics, and made short by freezing the startup heap.

CPython's collector stops the event loop while it runs. A full (generation 2) collection
walks every tracked object; after startup most of those are modules, classes, the app's
routes, pydantic schemas and OpenTelemetry instruments, alive for the whole process. In
lead-intake that walk took about 60 ms once every 15-20 s under load: every request in
flight waited, and at 70% of the service's maximum rate the backlog of one pause took
another 100-200 ms to drain (docs/decisions/0020).

`gc.freeze()` moves what exists at the end of startup into a permanent generation that later
collections skip, so they walk only what was allocated since. The collector still runs and
still frees request garbage and cycles; only the startup objects are no longer walked.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSE = Histogram(
    "funnel_gc_pause_seconds",
    "Garbage-collector pauses (the event loop is stopped meanwhile), by generation",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

_started: list[float] = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    elif _started[0]:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _started[0])
        _started[0] = 0.0


def measure_gc_pauses() -> None:
    """Observe every collection's pause in `funnel_gc_pause_seconds` (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def freeze_startup_heap() -> int:
    """Collect the startup garbage, then freeze what is left; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    """At shutdown: what was frozen is collectable again (an app stopped in a longer-lived
    process, as in the tests, must not leave its cycles behind for good)."""
    gc.unfreeze()
