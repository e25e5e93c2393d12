"""The three funnels shipped as ready defaults (stage_tracker/default_funnels/), v1 each."""

from __future__ import annotations

from functools import cache
from importlib import resources

from stage_tracker.funnels.models.definition import FunnelDefinition
from stage_tracker.funnels.models.parsing import parse_definition

DEFAULT_IDS = ("digital-sales", "subscription", "b2b-sales-cycle")


def default_source(funnel_id: str) -> str:
    return (resources.files("stage_tracker") / "default_funnels" / f"{funnel_id}.yaml").read_text()


@cache
def default_funnels() -> dict[str, FunnelDefinition]:
    return {f: parse_definition(default_source(f), version=1) for f in DEFAULT_IDS}
