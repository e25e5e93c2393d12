"""The shipped playbooks and templates, and which touches an event calls for (pure)."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from funnel_contracts import ActivityRecorded, LeadScored, LeakDetected, StageChanged, examples
from notifier.playbooks.catalog import default_playbooks
from notifier.playbooks.models import Playbook, plans_for
from notifier.playbooks.models.templates import check, shipped

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
LEAD = uuid4()


def _changed(from_stage: str | None, to_stage: str, position: int) -> StageChanged:
    return examples.stage_changed(
        lead_id=LEAD,
        from_stage=from_stage,
        to_stage=to_stage,
        to_stage_position=position,
        changed_at=NOW,
    )


def _activity(kind: str) -> ActivityRecorded:
    return examples.activity_recorded(lead_id=LEAD, activity_type=kind, occurred_at=NOW)


BOOKS = list(default_playbooks().values())


def test_the_shipped_playbooks_cover_every_touch_of_the_domain() -> None:
    assert set(default_playbooks()) == {
        "welcome", "nurture-1", "nurture-2", "nurture-3", "decision-offer",
        "abandoned-cart-1", "abandoned-cart-2", "delivery-feedback", "review-request",
        "renewal-reminder", "win-back", "hot-lead-call", "leak-alert",
    }  # fmt: skip
    assert all(not b.unknown_activity_types() for b in BOOKS)


@pytest.mark.parametrize("book", [b for b in BOOKS if b.channel == "email"], ids=lambda b: b.name)
def test_every_shipped_template_renders_in_the_four_languages(book: Playbook) -> None:
    templates = shipped(book.template)
    assert {"en", "sv", "zh-Hant", "ru"} <= set(templates)
    check(templates, book.kind)  # raises with the locale, part and line when it does not


def test_entering_the_first_stage_calls_for_the_welcome_only() -> None:
    [plan] = plans_for(BOOKS, _changed(None, "awareness", 0), cause_id="e1", now=NOW)
    assert (plan.playbook, plan.kind, plan.due_at, plan.dedupe_key) == (
        "welcome",
        "transactional",
        NOW,
        "",
    )
    assert plans_for(BOOKS, _changed("interest", "awareness", 0), cause_id="e2", now=NOW) == []


def test_interest_starts_the_nurture_sequence_which_needs_the_stage() -> None:
    plans = plans_for(BOOKS, _changed("awareness", "interest", 1), cause_id="e1", now=NOW)
    by_name = {p.playbook: p for p in plans}
    assert set(by_name) == {"nurture-1", "nurture-2", "nurture-3"}
    assert by_name["nurture-1"].due_at == NOW + timedelta(days=1)
    assert by_name["nurture-3"].due_at == NOW + timedelta(days=9)
    assert all(p.requires_stage == "interest" and p.kind == "marketing" for p in plans)


def test_an_abandoned_cart_schedules_two_reminders_the_purchase_cancels() -> None:
    plans = plans_for(
        BOOKS, _activity("cart_abandoned"), cause_id="cart-1", current_stage="desire", now=NOW
    )
    assert sorted(p.playbook for p in plans) == ["abandoned-cart-1", "abandoned-cart-2"]
    assert all("purchase_completed" in p.cancel_on for p in plans)
    assert all(p.dedupe_key == "cart-1" for p in plans)  # once per cart, not once ever


def test_a_lead_turning_hot_makes_a_task_for_sales_once_per_crossing() -> None:
    def scored(temp: str, prev: str | None) -> LeadScored:
        return LeadScored(
            lead_id=LEAD, funnel_id="digital-sales", score=60, fit_score=30,
            engagement_score=30, temperature=temp, previous_temperature=prev, scored_at=NOW,
        )  # fmt: skip

    [plan] = plans_for(BOOKS, scored("hot", "warm"), cause_id="s1", now=NOW)
    assert (plan.playbook, plan.channel) == ("hot-lead-call", "task")
    assert plans_for(BOOKS, scored("hot", "hot"), cause_id="s2", now=NOW) == []
    assert plans_for(BOOKS, scored("warm", "cold"), cause_id="s3", now=NOW) == []


def test_a_disabled_playbook_schedules_nothing() -> None:
    welcome = default_playbooks()["welcome"].model_copy(update={"enabled": False})
    assert plans_for([welcome], _changed(None, "awareness", 0), cause_id="e", now=NOW) == []


def test_every_playbook_acts_on_triggers_of_the_last_day_by_default() -> None:
    assert {b.max_trigger_age for b in BOOKS} == {timedelta(days=1)}
    fresh = plans_for(
        BOOKS, _changed(None, "awareness", 0), cause_id="e1", now=NOW + timedelta(hours=23)
    )
    assert [(p.playbook, p.stale, p.dedupe_key) for p in fresh] == [("welcome", False, "")]


def test_a_trigger_older_than_max_trigger_age_is_a_stale_plan_keyed_by_its_cause() -> None:
    later = NOW + timedelta(days=1, seconds=1)
    [welcome] = plans_for(BOOKS, _changed(None, "awareness", 0), cause_id="import-1", now=later)
    assert (welcome.playbook, welcome.stale) == ("welcome", True)
    # keyed by its cause: a stale skip never takes the place of a fresh trigger later
    assert welcome.dedupe_key == "stale:import-1"
    # a stall move dated at a limit passed long ago, a weeks-old activity: stale too
    carts = plans_for(
        BOOKS, _activity("cart_abandoned"), cause_id="c", now=NOW + timedelta(days=40)
    )
    assert sorted((p.playbook, p.stale) for p in carts) == [
        ("abandoned-cart-1", True), ("abandoned-cart-2", True),
    ]  # fmt: skip


def test_a_playbook_may_act_on_older_triggers() -> None:
    patient = default_playbooks()["welcome"].model_copy(
        update={"max_trigger_age": timedelta(days=45)}
    )
    [plan] = plans_for(
        [patient], _changed(None, "awareness", 0), cause_id="e", now=NOW + timedelta(days=40)
    )
    assert (plan.stale, plan.dedupe_key) == (False, "")
    assert Playbook.model_validate(
        {"name": "x", "trigger": {"type": "stage_entered", "position": 0}, "template": "welcome",
         "max_trigger_age": "P7D"}
    ).max_trigger_age == timedelta(days=7)  # fmt: skip


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"delya": "P1D"}, "delya"),
        ({"channel": "sms"}, "channel"),
        ({"trigger": {"type": "activity", "activity_types": []}}, "trigger"),
        ({"channel": "webhook"}, "webhook"),
        ({"templates": {"sv": {"text": "Hej"}}}, "en"),
        ({"delay": "-PT1H"}, "delay"),
        ({"max_trigger_age": "PT0S"}, "max_trigger_age"),
    ],
)
def test_a_bad_playbook_is_refused_naming_what_is_wrong(
    patch: dict[str, object], field: str
) -> None:
    raw = {"name": "x", "trigger": {"type": "stage_entered", "position": 0}, "template": "welcome"}
    with pytest.raises(ValidationError) as caught:
        Playbook.model_validate({**raw, **patch})
    assert field in str(caught.value)


def _leak(funnel_id: str = "digital-sales") -> LeakDetected:
    leak = uuid4()
    return LeakDetected(
        lead_id=leak,
        leak_id=leak,
        funnel_id=funnel_id,
        from_stage="interest",
        to_stage="desire",
        segment="source:google",
        window_days=7,
        baseline_rate=0.5,
        baseline_entered=800,
        current_rate=0.1,
        current_entered=200,
        p_value=1e-9,
        detected_at=NOW,
    )


def test_a_leak_calls_for_the_teams_task_only() -> None:
    event = _leak()
    plans = plans_for(BOOKS, event, cause_id="e-1", now=event.detected_at)
    assert [(p.playbook, p.channel, p.stage, p.funnel_id) for p in plans] == [
        ("leak-alert", "task", "desire", "digital-sales")
    ]
    assert plans[0].dedupe_key == "e-1"
    only_b2b = Playbook.model_validate(
        {
            "name": "b2b-leaks",
            "trigger": {"type": "leak", "funnels": ["b2b-sales-cycle"], "events": ["resolved"]},
            "channel": "task",
            "task_title": "leak",
        }
    )
    assert plans_for([only_b2b], event, cause_id="e-1", now=event.detected_at) == []
    with pytest.raises(ValueError, match="leak playbook makes a task"):
        Playbook.model_validate(
            {"name": "leak-mail", "trigger": {"type": "leak"}, "template": "welcome"}
        )
