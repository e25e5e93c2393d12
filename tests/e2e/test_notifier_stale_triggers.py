"""Importing a business's existing contacts spams nobody: on the whole stack, contacts imported
with capture times days and weeks ago get no welcome, and the stall moves their old capture
times call for (dated at limits passed long ago) send nothing either; every such touch is in
the lead's touches as `skipped`, reason `stale`. A contact captured now is welcomed as ever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e

# A playbook on the stall timer's moves: the stall and the loss of the old contacts call for it.
STALLED_PLAYBOOK = """
name: e2e-stalled
trigger: {type: stage_entered, stages: [stalled, lost]}
kind: transactional
once_per: trigger
templates:
  en: {subject: "Still there?", text: "We miss you."}
"""


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("stale-triggers-e2e", FUNNEL_STALL_TIMER_POLL_SECONDS="1")
    try:
        yield stack
    finally:
        stop_stack(stack, "stale-triggers-e2e")


async def test_backdated_imports_and_their_stall_moves_send_nothing(stack: Stack) -> None:
    client = StackClient(stack)
    now = datetime.now(UTC)
    # digital-sales: awareness stalls after 30 days, a stalled lead is lost 30 days later
    ages = {"two@old.example": 2, "forty@old.example": 40, "seventy@old.example": 70}
    async with httpx.AsyncClient(
        base_url=stack.url("notifier"), headers=client.auth, timeout=30
    ) as notifier:
        saved = await notifier.put(
            "/v1/playbooks/e2e-stalled",
            content=STALLED_PLAYBOOK,
            headers={"content-type": "application/yaml"},
        )
        assert saved.status_code == 200, saved.text
        async with httpx.AsyncClient(
            base_url=stack.url("lead-intake"), headers=client.auth, timeout=30
        ) as intake:
            response = await intake.post(
                "/v1/leads/import",
                json={
                    "form_id": "demo",
                    "leads": [
                        *(
                            {"email": e, "captured_at": (now - timedelta(days=d)).isoformat()}
                            for e, d in ages.items()
                        ),
                        {"email": "fresh@new.example", "captured_at": now.isoformat()},
                    ],
                },
            )
        assert response.status_code in (200, 202), response.text
        assert response.json()["imported"] == 4
        ids = dict(zip([*ages, "fresh@new.example"], response.json()["lead_ids"], strict=True))

        async def stages() -> dict[str, str | None]:
            found: dict[str, str | None] = {}
            for email, lead_id in ids.items():
                journey = await client.get("stage-tracker", f"/v1/leads/{lead_id}/journey")
                found[email] = journey.json()["current_stage"] if journey.is_success else None
            return found

        # The funnel still moves them as it says: the stall timer fires for the old ones.
        moved = await eventually(
            stages,
            lambda s: s["forty@old.example"] == "stalled" and s["seventy@old.example"] == "lost",
            timeout=120,
        )
        assert moved == {
            "two@old.example": "awareness",
            "forty@old.example": "stalled",
            "seventy@old.example": "lost",
            "fresh@new.example": "awareness",
        }

        async def touches() -> dict[str, list[tuple[str, str, str | None]]]:
            found = {}
            for email, lead_id in ids.items():
                r = await notifier.get(f"/v1/leads/{lead_id}/touches")
                assert r.status_code == 200, r.text
                found[email] = sorted(
                    (t["playbook"], t["status"], t["reason"]) for t in r.json()["touches"]
                )
            return found

        def complete(t: dict[str, list[Any]]) -> bool:
            return (
                len(t["seventy@old.example"]) == 3
                and len(t["forty@old.example"]) == 2
                and len(t["two@old.example"]) == 1
                and ("welcome", "sent", None) in t["fresh@new.example"]
            )

        seen = await eventually(touches, complete, timeout=120)
        stale = ("skipped", "stale")
        assert seen["two@old.example"] == [("welcome", *stale)]
        assert seen["forty@old.example"] == [("e2e-stalled", *stale), ("welcome", *stale)]
        assert seen["seventy@old.example"] == [
            ("e2e-stalled", *stale),  # the stall, dated 40 days ago
            ("e2e-stalled", *stale),  # the loss, dated 10 days ago
            ("welcome", *stale),
        ]
        assert seen["fresh@new.example"] == [("welcome", "sent", None)]

        # The mailbox: the fresh contact's welcome, and nothing for the imported history.
        recipients = await settled(lambda: _recipients(client))
        assert recipients == {"fresh@new.example": 1}
        assert (await notifier.delete("/v1/playbooks/e2e-stalled")).status_code == 204


async def _recipients(client: StackClient) -> dict[str, int]:
    return dict(client.mail_recipients())


async def test_an_imported_stage_is_applied_by_the_tracker_and_old_moves_send_nothing(
    stack: Stack,
) -> None:
    client = StackClient(stack)
    now = datetime.now(UTC)

    def ago(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    text = (
        "email,captured_at,stage,entered_at\n"
        f"desire@old.example,{ago(30)},desire,{ago(20)}\n"  # desire stalls after 14 days
        f"interest@new.example,{ago(0)},interest,{ago(0)}\n"
        f"nowhere@old.example,{ago(3)},no-such-stage,{ago(2)}\n"
    )
    async with httpx.AsyncClient(
        base_url=stack.url("lead-intake"), headers=client.auth, timeout=30
    ) as intake:
        response = await intake.post(
            "/v1/leads/import",
            params={"form_id": "demo"},
            content=text.encode(),
            headers={"content-type": "text/csv"},
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["imported"], body["failed"]) == (2, 1)
    # the funnel's stages come from stage-tracker: a stage it lacks is the row's error
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(3, "stage")]
    old, new, _ = body["lead_ids"]

    async def journey(lead_id: str) -> dict[str, Any]:
        r = await client.get("stage-tracker", f"/v1/leads/{lead_id}/journey")
        return r.json() if r.is_success else {}

    stalled = await eventually(
        lambda: journey(old), lambda j: j.get("current_stage") == "stalled", timeout=120
    )
    assert [(t["to_stage"], t["reason"]) for t in stalled["transitions"]][:2] == [
        ("awareness", "captured"),
        ("desire", "imported"),
    ]
    assert stalled["transitions"][2]["to_stage"] == "stalled"
    fresh = await eventually(
        lambda: journey(new), lambda j: j.get("current_stage") == "interest", timeout=120
    )
    assert [(t["to_stage"], t["reason"]) for t in fresh["transitions"]] == [
        ("awareness", "captured"),
        ("interest", "imported"),
    ]

    async with httpx.AsyncClient(
        base_url=stack.url("notifier"), headers=client.auth, timeout=30
    ) as notifier:

        async def touches(lead_id: str) -> dict[str, tuple[str, str | None]]:
            r = await notifier.get(f"/v1/leads/{lead_id}/touches")
            return {t["playbook"]: (t["status"], t["reason"]) for t in r.json()["touches"]}

        old_touches = await eventually(
            lambda: touches(old), lambda t: {"welcome", "decision-offer"} <= set(t)
        )
        assert old_touches == {
            "welcome": ("skipped", "stale"),
            "decision-offer": ("skipped", "stale"),
        }
        new_touches = await eventually(
            lambda: touches(new), lambda t: t.get("welcome", ("",))[0] == "sent"
        )
        # entered interest now: the nurture waits its day, as for a lead captured by a form
        assert new_touches["nurture-1"] == ("scheduled", None)
    recipients = await settled(lambda: _recipients(client))
    assert "desire@old.example" not in recipients
    assert recipients["interest@new.example"] == 1
