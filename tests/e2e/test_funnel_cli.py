"""The `funnel` command as a newcomer runs it: up --detach with a demo, then down."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from funnel_devstack.mailbox import read_messages
from funnel_devstack.processes import is_alive, read_state

pytestmark = pytest.mark.e2e


def _funnel(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-m", "funnel_devstack.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_up_detach_runs_the_demo_and_down_stops_everything() -> None:
    root = Path(tempfile.mkdtemp(prefix="funnel-cli-"))
    key = secrets.token_urlsafe(24)
    try:
        out = _funnel(
            root,
            "up",
            "--detach",
            "--free-ports",
            "--history-days",
            "60",
            "--demo",
            "40",
            env={"FUNNEL_ADMIN_API_KEY": key},
        )
        state = read_state(root / "state.json")
        info = json.loads((root / "stack.json").read_text())
        assert f"admin API key  {key}" in out
        assert "posted 40, accepted 40" in out
        assert set(state) == {
            "postgres",
            "kafka",
            "mailbox",
            "lead-intake",
            "stage-tracker",
            "notifier",
            "reporting",
        }
        assert all(is_alive(p["pid"]) for p in state.values())
        snapshot = httpx.get(
            f"{info['urls']['reporting']}/v1/funnels/digital-sales/snapshot",
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        people = int(out.split(" distinct people")[0].rsplit(", ", 1)[1])
        history = int(out.split(" people captured over 60 days")[0].rsplit("\n", 1)[1])
        assert history > 1000
        assert snapshot["total"] == people + history
        # 60 days of history: conversion over time, time in stage, cohorts, subscriptions.
        headers = {"Authorization": f"Bearer {key}"}
        base = f"{info['urls']['reporting']}/v1/funnels/digital-sales"
        today = datetime.now(UTC).date()
        period = {"start": str(today - timedelta(days=60)), "end": str(today)}
        weekly = httpx.get(
            f"{base}/conversion-over-time",
            params={**period, "interval": "week", "steps": "awareness,action"},
            headers=headers,
        ).json()["series"]
        assert len([w for w in weekly if w["entered"] > 50]) >= 8
        assert sum(w["converted"] for w in weekly) > 50
        stays = httpx.get(f"{base}/time-in-stage", params=period, headers=headers).json()
        assert {"awareness", "interest", "desire"} <= {s["stage"] for s in stays["stages"]}
        cohorts = httpx.get(
            f"{base}/conversion", params={**period, "cohort": "week"}, headers=headers
        ).json()["groups"]
        assert len(cohorts) >= 8
        subscriptions = httpx.get(
            f"{base}/subscriptions", params={**period, "interval": "week"}, headers=headers
        ).json()["series"]
        assert max(Decimal(s["mrr"]) for s in subscriptions) > 0
        # The autumn-sale campaign's people of the last two weeks stopped buying.
        recent = {"start": str(today - timedelta(days=13)), "end": str(today)}
        by_campaign = httpx.get(
            f"{base}/conversion",
            params={**recent, "breakdown": "campaign", "steps": "interest,action"},
            headers=headers,
        ).json()["groups"]
        rates = {g["segment"]: g["overall_conversion"] for g in by_campaign}
        assert rates["autumn-sale"] < rates["brand-search"] / 2
        assert len(read_messages(root / "mail")) >= 1
    finally:
        down = _funnel(root, "down")
    assert "stopped postgres" in down
    assert not any(is_alive(p["pid"], p.get("create_time")) for p in state.values())
    assert not (root / "state.json").exists()
