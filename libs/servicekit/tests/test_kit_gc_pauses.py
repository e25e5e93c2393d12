"""Garbage-collector pauses are measured, and the startup heap is frozen out of collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from funnel_servicekit.gc_pauses import freeze_startup_heap, measure_gc_pauses


def _pauses(generation: str) -> float:
    value = REGISTRY.get_sample_value("funnel_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_each_collection_is_observed_once_by_generation() -> None:
    measure_gc_pauses()
    measure_gc_pauses()  # a second install must not count twice
    seen: dict[str, int] = {"0": 0, "2": 0}

    def witness(phase: str, info: dict[str, Any]) -> None:
        # Every collection in the window, ours or one another thread started.
        if phase == "stop" and str(info["generation"]) in seen:
            seen[str(info["generation"])] += 1

    # No automatic collections meanwhile: reading the registry allocates, and a collection it
    # set off would be counted by the witness and not by the reading under way.
    gc.disable()
    gc.callbacks.append(witness)
    try:  # both readings inside the witness's window
        before = {g: _pauses(g) for g in seen}
        gc.collect(2)
        gc.collect(0)
        gc.collect(0)
        after = {g: _pauses(g) for g in seen}
    finally:
        gc.callbacks.remove(witness)
        gc.enable()
    assert seen["2"] >= 1
    assert seen["0"] >= 2
    assert after["2"] - before["2"] == seen["2"]
    assert after["0"] - before["0"] == seen["0"]


@pytest.mark.usefixtures("unfrozen")
def test_frozen_objects_are_skipped_but_new_garbage_is_still_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    kept = [Node() for _ in range(1000)]
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() >= 1000
    assert gc.get_count()[0] < 100  # the collection before the freeze emptied generation 0
    before_full = len(gc.get_objects(generation=2))
    assert before_full < frozen  # the old objects are no longer in any generation's walk
    del kept  # frozen cycles stay (the price of freezing: only startup objects are frozen)
    for _ in range(500):
        Node()
    assert gc.collect() >= 500  # cycles made after the freeze are found and freed
