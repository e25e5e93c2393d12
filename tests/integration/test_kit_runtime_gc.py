"""A service freezes its startup heap once started, reports GC pauses, and thaws on stop."""

from __future__ import annotations

import gc

import pytest
from prometheus_client.parser import text_string_to_metric_families

from funnel_devstack.stack import Stack
from tests.integration.test_intake_harness import running_intake

pytestmark = pytest.mark.integration


def _pause_counts(metrics_text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "funnel_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    counts[sample.labels["generation"]] = sample.value
    return counts


async def test_started_service_has_a_frozen_heap_and_counts_each_collection(
    fresh_dsn: str, infra: Stack
) -> None:
    gc.unfreeze()
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as intake:
        frozen = gc.get_freeze_count()
        # The app, its routes, schemas and the imported modules: tens of thousands of objects.
        assert frozen > 10_000
        before = _pause_counts((await intake.client.get("/metrics")).text)
        gc.collect(2)
        gc.collect(0)
        after = _pause_counts((await intake.client.get("/metrics")).text)
        assert after["2"] - before.get("2", 0) >= 1
        assert after["0"] - before.get("0", 0) >= 1
        # A full collection does not walk the frozen objects any more.
        assert len(gc.get_objects(generation=2)) < frozen
    assert gc.get_freeze_count() == 0  # stopped: collectable again


async def test_the_freeze_can_be_turned_off(fresh_dsn: str, infra: Stack) -> None:
    gc.unfreeze()
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, gc_freeze_after_startup=False
    ) as intake:
        assert gc.get_freeze_count() == 0
        assert (await intake.client.get("/metrics")).status_code == 200
