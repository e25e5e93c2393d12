"""`funnel report rebuild --swap` on a stack started with `funnel up`, as an operator runs it:
the whole pipeline makes a funnel from form posts and activities, the rebuild replays every
topic into fresh tables, swaps them in (stopping and restarting reporting) and the reports
answer exactly the numbers they answered before."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from funnel_devstack.processes import is_alive, read_state
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e
FUNNEL = "/v1/funnels/digital-sales"
# The environment the command would otherwise take its database and broker from.
_OWN_SETTINGS = ("FUNNEL_DATABASE_URL", "FUNNEL_KAFKA_BOOTSTRAP_SERVERS")


def _funnel(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}
    result = subprocess.run(
        [sys.executable, "-m", "funnel_devstack.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**base, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def _numbers(url: str, key: str) -> dict[str, Any]:
    """Every report the dashboard reads, and the projection's lag (zero once caught up)."""
    period: dict[str, str] = {}  # the last 30 days: the demo's leads are from just now
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        out: dict[str, Any] = {}
        for name, path, params in (
            ("snapshot", "/snapshot", {}),
            ("conversion", "/conversion", period),
            ("by_source", "/conversion", {**period, "breakdown": "source", "cohort": "week"}),
            ("over_time", "/conversion-over-time", period),
            ("stays", "/time-in-stage", period),
            ("revenue", "/revenue", {"breakdown": "campaign"}),
            ("interactions", "/interactions-before-purchase", period),
        ):
            response = await client.get(FUNNEL + path, params=params)
            assert response.status_code == 200, response.text
            out[name] = response.json()
        metrics = (await client.get("/metrics")).text
    out["lag"] = sum(
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "funnel_consumer_lag"
    )
    return out


async def test_report_rebuild_swaps_in_tables_with_exactly_the_same_numbers() -> None:
    root = Path(tempfile.mkdtemp(prefix="funnel-rebuild-"))
    key = secrets.token_urlsafe(24)
    try:
        out = _funnel(
            root,
            "up",
            "--detach",
            "--free-ports",
            "--demo",
            "60",
            env={"FUNNEL_ADMIN_API_KEY": key},
        )
        people = int(out.split(" distinct people")[0].rsplit(", ", 1)[1])
        url = json.loads((root / "stack.json").read_text())["urls"]["reporting"]
        before = await settled(lambda: _numbers(url, key), quiet=4, timeout=120)
        assert before["lag"] == 0
        assert before["snapshot"]["total"] == people
        assert before["conversion"]["groups"][0]["steps"][0]["leads"] == people
        assert sum(s["orders"] for s in before["revenue"]["segments"]) > 0
        old_pid = read_state(root / "state.json")["reporting"]["pid"]

        # With the same settings as `up` (the key came from the environment, not a file).
        out = _funnel(root, "report", "rebuild", "--swap", env={"FUNNEL_ADMIN_API_KEY": key})

        assert "stopped reporting for the swap" in out
        assert "rebuilt reporting_rebuild: " in out
        assert "now live as reporting" in out
        assert "reporting is serving again" in out
        events = int(out.split("rebuilt reporting_rebuild: ")[1].split(" events")[0])
        assert events > 2 * people  # captures, stage changes, activities: every topic replayed
        new = read_state(root / "state.json")["reporting"]
        assert new["pid"] != old_pid
        assert is_alive(new["pid"])
        assert not is_alive(old_pid)
        after = await eventually(
            lambda: _numbers(url, key), lambda n: n["lag"] == 0 and n == before, timeout=60
        )
        assert after == before
    finally:
        _funnel(root, "down", "--purge")
