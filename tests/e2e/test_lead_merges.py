"""A merge on the whole stack, as an operator's stack runs it (`funnel up`): two leads of one
person, the newer one further along the funnel, merged through lead-intake's API. The older
survives; the tracker moves it to the further stage (reason `merged`) and keeps both
histories; the notifier keeps one of each touch; every report counts the person once, with
what both leads did; and `funnel report rebuild --swap` gives exactly the same numbers."""

from __future__ import annotations

import json
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_reporting_rebuild_command import _funnel, _numbers
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e


async def test_a_merge_counts_the_person_once_and_survives_a_rebuild() -> None:
    root = Path(tempfile.mkdtemp(prefix="funnel-merge-"))
    key = secrets.token_urlsafe(24)
    try:
        _funnel(root, "up", "--detach", "--free-ports", env={"FUNNEL_ADMIN_API_KEY": key})
        urls = json.loads((root / "stack.json").read_text())["urls"]
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(headers=auth, timeout=30) as http:

            async def post(body: dict[str, Any]) -> str:
                r = await http.post(f"{urls['lead-intake']}/v1/forms/demo/submissions", json=body)
                assert r.status_code == 202, r.text
                return str(r.json()["lead_id"])

            older = await post({"email": "mia@home.example", "utm_source": "fair"})
            newer = await post({"email": "mia@work.example", "utm_source": "ads"})
            now = datetime.now(UTC).isoformat()
            activity = await http.post(
                f"{urls['lead-intake']}/v1/activities",
                json={"activities": [
                    {"lead_id": newer, "type": "pricing_viewed", "occurred_at": now},
                    {"lead_id": newer, "type": "purchase_completed", "occurred_at": now,
                     "order_id": "o-1", "amount": "49.00", "currency": "EUR"},
                ]},
            )  # fmt: skip
            assert activity.status_code in (200, 202, 207), activity.text

            async def journey(lead_id: str) -> dict[str, Any]:
                r = await http.get(f"{urls['stage-tracker']}/v1/leads/{lead_id}/journey")
                return r.json() if r.is_success else {}

            await eventually(lambda: journey(newer), lambda j: j.get("current_stage") == "action")

            async def snapshot_total() -> int:
                r = await http.get(f"{urls['reporting']}/v1/funnels/digital-sales/snapshot")
                return int(r.json()["total"]) if r.is_success else -1

            # The reports answer once reporting has projected the two people (the tracker
            # knowing them first says nothing of reporting's consumer).
            await eventually(snapshot_total, lambda n: n == 2)
            two = await settled(lambda: _numbers(urls["reporting"], key), quiet=4, timeout=120)
            assert two["snapshot"]["total"] == 2

            merged = await http.post(
                f"{urls['lead-intake']}/v1/leads/{newer}/merge", json={"other_lead_id": older}
            )
            assert merged.status_code == 200, merged.text
            assert merged.json() == {"lead_id": older, "merged_lead_id": newer}
            gone = await http.get(f"{urls['lead-intake']}/v1/leads/{newer}")
            assert gone.json()["merged_into"] == older

            survivor = await eventually(
                lambda: journey(older), lambda j: j.get("current_stage") == "action"
            )
            assert ("action", "merged") in [
                (t["to_stage"], t["reason"]) for t in survivor["transitions"]
            ]
            other = await journey(newer)  # its own history is kept, its timers stopped
            assert other["current_stage"] == "action"
            assert other["timer_due_at"] is None

            one = await eventually(
                lambda: _numbers(urls["reporting"], key),
                lambda n: n["lag"] == 0 and n["snapshot"]["total"] == 1,
                timeout=120,
            )
            one = await settled(lambda: _numbers(urls["reporting"], key), quiet=4, timeout=120)
            assert one["snapshot"]["total"] == 1  # the person, once
            assert sum(s["orders"] for s in one["revenue"]["segments"]) == 1  # what both did

            touches = await http.get(f"{urls['notifier']}/v1/leads/{older}/touches")
            playbooks = [t["playbook"] for t in touches.json()["touches"]
                         if t["status"] in ("scheduled", "sent")]  # fmt: skip
            assert len(playbooks) == len(set(playbooks))  # one of each touch

        out = _funnel(root, "report", "rebuild", "--swap", env={"FUNNEL_ADMIN_API_KEY": key})
        assert "now live as reporting" in out
        after = await eventually(
            lambda: _numbers(urls["reporting"], key),
            lambda n: n["lag"] == 0 and n == one,
            timeout=120,
        )
        assert after == one  # a merge followed by a rebuild: the same reports
    finally:
        _funnel(root, "down", "--purge")
