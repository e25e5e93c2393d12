"""The send-time decision: conditions again, consent, caps and quiet hours (pure)."""

from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import cast
from zoneinfo import ZoneInfo

from notifier.playbooks.models import Cap
from notifier.touches.models.send_rules import (
    Defer,
    LeadFacts,
    Policy,
    QuietHours,
    Send,
    Suppress,
    TouchFacts,
    cap_frees_at,
    decide,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # 13:00 in Stockholm, 20:00 in Taipei
DAY = timedelta(days=1)
POLICY = Policy(
    QuietHours(time(21), time(8)),
    "UTC",
    {"email": [Cap(count=1, period=DAY), Cap(count=3, period=7 * DAY)]},
)


def _touch(**kw: object) -> TouchFacts:
    base: dict[str, object] = dict(
        channel="email", kind="marketing", category="marketing", playbook="abandoned-cart-1",
        requires_stage=None, cancel_on=("purchase_completed",), triggered_at=NOW - DAY,
    )  # fmt: skip
    return cast(TouchFacts, SimpleNamespace(**{**base, **kw}))


def _lead(**kw: object) -> LeadFacts:
    base: dict[str, object] = dict(
        reachable=True, stage="desire", consents={"marketing": True}, last_activity={},
        time_zone="Europe/Stockholm",
    )  # fmt: skip
    return LeadFacts(**{**base, **kw})  # type: ignore[arg-type]


def _decide(touch: TouchFacts, lead: LeadFacts, now: datetime = NOW) -> object:
    return decide(touch, lead, POLICY, now, playbook_enabled=True)


def test_a_due_touch_with_everything_in_order_is_sent() -> None:
    assert _decide(_touch(), _lead()) == Send()


def test_the_purchase_since_the_trigger_suppresses_the_cart_reminder() -> None:
    bought = _lead(last_activity={"purchase_completed": NOW - timedelta(hours=2)})
    assert _decide(_touch(), bought) == Suppress("purchase_completed since the trigger")
    earlier = _lead(last_activity={"purchase_completed": NOW - 2 * DAY})  # before this cart
    assert _decide(_touch(), earlier) == Send()


def test_a_lead_that_left_the_stage_is_not_nurtured() -> None:
    touch = _touch(requires_stage="interest")
    assert _decide(touch, _lead(stage="desire")) == Suppress("left stage interest")
    assert _decide(touch, _lead(stage="interest")) == Send()


def test_marketing_needs_consent_in_its_own_category() -> None:
    assert _decide(_touch(), _lead(consents={})) == Suppress("consent for marketing not given")
    withdrawn = _lead(consents={"marketing": False, "product-news": True})
    assert _decide(_touch(), withdrawn) == Suppress("consent for marketing withdrawn")
    news = _touch(category="product-news")
    assert _decide(news, withdrawn) == Send()


def test_transactional_mail_and_sales_tasks_need_no_marketing_consent() -> None:
    assert _decide(_touch(kind="transactional"), _lead(consents={})) == Send()
    assert _decide(_touch(channel="task"), _lead(consents={}, reachable=False)) == Send()
    assert isinstance(_decide(_touch(kind="transactional"), _lead(reachable=False)), Suppress)


def test_quiet_hours_in_the_leads_time_zone_make_the_touch_wait() -> None:
    late_in_taipei = _lead(time_zone="Asia/Taipei")
    night = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # 22:00 in Taipei
    decision = _decide(_touch(), late_in_taipei, night)
    assert decision == Defer(
        datetime(2026, 11, 3, 8, 0, tzinfo=ZoneInfo("Asia/Taipei")), "quiet hours"
    )
    early = datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # 06:00 in Stockholm, same-day end
    assert _decide(_touch(), _lead(), early) == Defer(
        datetime(2026, 11, 2, 8, 0, tzinfo=ZoneInfo("Europe/Stockholm")), "quiet hours"
    )
    assert _decide(_touch(kind="transactional"), late_in_taipei, night) == Send()


def test_an_unknown_time_zone_falls_back_to_the_default() -> None:
    night_utc = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
    decision = _decide(_touch(), _lead(time_zone="Mars/Olympus"), night_utc)
    assert isinstance(decision, Defer)
    assert decision.until == datetime(2026, 11, 3, 8, 0, tzinfo=ZoneInfo("UTC"))


def test_frequency_caps_defer_until_the_window_frees() -> None:
    sent_this_morning = _lead(recent_sends=(NOW - timedelta(hours=3),))
    assert _decide(_touch(), sent_this_morning) == Defer(NOW + timedelta(hours=21), "frequency cap")
    three_this_week = (NOW - 2 * DAY, NOW - 3 * DAY, NOW - 6 * DAY)
    assert cap_frees_at(three_this_week, POLICY.channel_caps["email"], NOW) == NOW + DAY
    assert _decide(_touch(kind="transactional"), sent_this_morning) == Send()


def test_a_playbook_switched_off_suppresses_its_waiting_touches() -> None:
    decision = decide(_touch(), _lead(), POLICY, NOW, playbook_enabled=False)
    assert decision == Suppress("playbook disabled or removed")
