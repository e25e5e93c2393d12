"""Which touch an event calls for, and the email it becomes (pure)."""

from datetime import UTC, datetime
from uuid import uuid4

from funnel_contracts import StageChanged
from notifier.email_message import message_id, welcome_email
from notifier.playbooks import WELCOME, plan_for

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def _changed(from_stage: str | None, to_stage: str, position: int) -> StageChanged:
    return StageChanged(
        lead_id=uuid4(),
        funnel_id="digital-sales",
        funnel_version=1,
        from_stage=from_stage,
        to_stage=to_stage,
        to_stage_position=position,
        reason="test",
        changed_at=NOW,
    )


def test_entering_the_first_stage_calls_for_the_welcome() -> None:
    assert plan_for(_changed(None, "awareness", 0)) == WELCOME


def test_later_moves_do_not_call_for_a_welcome() -> None:
    assert plan_for(_changed("awareness", "interest", 1)) is None
    assert plan_for(_changed(None, "interest", 1)) is None


def test_the_welcome_email_has_both_parts_and_a_message_id_from_the_touch() -> None:
    touch_id = uuid4()
    msg = welcome_email(
        touch_id=touch_id,
        to="ada@example.com",
        first_name="<Ada>",
        mail_from="Funnel <hello@funnel.example>",
        domain="funnel.example",
    )
    assert msg["Message-ID"] == f"<touch-{touch_id}@funnel.example>"
    assert msg["Message-ID"] == message_id(touch_id, "funnel.example")
    assert msg["To"] == "ada@example.com"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert "Hi <Ada>," in parts["text/plain"]
    assert "Hi &lt;Ada&gt;," in parts["text/html"]  # escaped in HTML
