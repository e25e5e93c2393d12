"""The stage machine and the default funnels (pure)."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from funnel_contracts import LeadCaptured, StageChanged
from stage_tracker.funnels import DEFAULT_FUNNELS, UnknownFunnel, funnel_by_id
from stage_tracker.machine import CurrentStage, decide

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def _captured(funnel_id: str = "digital-sales") -> LeadCaptured:
    return LeadCaptured(
        lead_id=uuid4(),
        submission_id=uuid4(),
        form_id="demo",
        funnel_id=funnel_id,
        email="a@example.com",
        captured_at=NOW,
    )


@pytest.mark.parametrize(
    ("funnel_id", "first"),
    [
        ("digital-sales", "awareness"),
        ("subscription", "awareness"),
        ("b2b-sales-cycle", "prospecting"),
    ],
)
def test_a_captured_lead_enters_the_first_stage_of_its_funnel(funnel_id: str, first: str) -> None:
    move = decide(None, _captured(funnel_id))
    assert move is not None
    assert (move.from_stage, move.to_stage, move.to_position) == (None, first, 0)
    assert move.reason == "captured"
    assert move.occurred_at == NOW


def test_a_second_capture_of_a_lead_already_in_the_funnel_is_no_move() -> None:
    assert decide(CurrentStage("digital-sales", 1, "interest"), _captured()) is None


def test_an_unknown_funnel_is_refused() -> None:
    with pytest.raises(UnknownFunnel):
        decide(None, _captured("no-such-funnel"))
    with pytest.raises(UnknownFunnel):
        funnel_by_id("nope")


def test_events_without_a_rule_move_nobody() -> None:
    changed = StageChanged(
        lead_id=uuid4(),
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=None,
        to_stage="awareness",
        to_stage_position=0,
        reason="captured",
        changed_at=NOW,
    )
    assert decide(None, changed) is None


def test_the_default_funnels_follow_the_domain() -> None:
    assert DEFAULT_FUNNELS["digital-sales"].stages == (
        "awareness",
        "interest",
        "desire",
        "action",
        "loyalty",
    )
    assert DEFAULT_FUNNELS["subscription"].stages[-2:] == ("re-evaluation", "repurchase")
    assert len(DEFAULT_FUNNELS["b2b-sales-cycle"].stages) == 7
