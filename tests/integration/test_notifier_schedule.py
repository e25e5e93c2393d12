"""The notifier's schedule on the real PostgreSQL and a real SMTP server: playbooks fire,
conditions are checked again at send time, outgrown touches are cancelled, caps and quiet
hours make touches wait, replicas share the work, an SMTP outage only delays."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from funnel_contracts import ActivityRecorded, LeadErased, LeadUpdatedV2, examples
from funnel_contracts.sealed import PersonalData, new_data_key, seal
from funnel_devstack.stack import Stack
from tests.integration.notifier_harness import Harness, captured, entered, notifier_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as harness:
        yield harness


def _activity(lead_id: object, kind: str, at: datetime | None = None) -> ActivityRecorded:
    return examples.activity_recorded(
        lead_id=lead_id, activity_type=kind, occurred_at=at or datetime.now(UTC)
    )


async def test_the_welcome_is_sent_once_with_its_message_id_and_touch_sent(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, email="Ada@Example.com"), entered(lead, "awareness", 0))
    await h.feed(entered(lead, "awareness", 0))  # a second entry (another event id)
    assert await h.send_due() == 1
    assert await h.send_due() == 0
    [touch] = await h.touches(lead)
    assert (touch["status"], touch["playbook"], touch["kind"]) == (
        "sent",
        "welcome",
        "transactional",
    )
    [mail] = h.mail_to("ada@example.com")
    assert mail["Message-ID"] == f"<touch-{touch['id']}@funnel.example>"
    assert mail["List-Unsubscribe"] is None  # transactional
    [sent] = await h.emitted("funnel.touch.sent.v1")
    assert (sent["touch_id"], sent["message_id"]) == (str(touch["id"]), mail["Message-ID"])


async def test_a_touch_waits_for_the_contact_details_then_goes(h: Harness) -> None:
    lead = uuid4()
    await h.feed(entered(lead, "awareness", 0))  # the stage event overtook the lead event
    assert await h.send_due() == 0
    await h.feed(captured(lead))
    assert await h.send_due() == 1
    assert await h.status(lead) == {"welcome": ("sent", None)}


async def test_marketing_without_consent_is_suppressed_with_why(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead), entered(lead, "interest", 1, "awareness"))
    assert set(await h.status(lead)) == {"nurture-1", "nurture-2", "nurture-3"}
    await h.make_due(lead, "nurture-1")
    await h.send_due()
    status = await h.status(lead)
    assert status["nurture-1"] == ("suppressed", "consent for marketing not given")
    assert status["nurture-2"] == ("scheduled", None)
    assert h.mail_to(f"{lead.hex[:10]}@example.com") == []


async def test_consent_withdrawn_by_a_colleague_suppresses_marketing(h: Harness) -> None:
    """lead-intake's PATCH withdraws consent; its lead.updated carries it: no more marketing."""
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), entered(lead, "interest", 1, "awareness"))
    key = new_data_key()
    sealed = seal(
        PersonalData(email=f"{lead.hex[:10]}@example.com"),
        key=key,
        lead_id=lead,
        event_type=LeadUpdatedV2.event_type,
    )
    withdrawal = LeadUpdatedV2(
        lead_id=lead,
        personal_data=sealed,
        has_email=True,
        has_phone=False,
        source="manual",
        updated_at=datetime.now(UTC),
        consent_withdrawn=("marketing",),
    )
    await h.feed(withdrawal)
    async with h.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT granted, source FROM consents WHERE lead_id = $1 AND category = 'marketing'",
            lead,
        )
    assert (row["granted"], row["source"]) == (False, "manual")
    await h.make_due(lead, "nurture-1")
    await h.send_due()
    assert (await h.status(lead))["nurture-1"] == (
        "suppressed",
        "consent for marketing withdrawn",
    )
    assert h.mail_to(f"{lead.hex[:10]}@example.com") == []


async def test_leaving_the_stage_cancels_the_nurture_sequence(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), entered(lead, "interest", 1, "awareness"))
    await h.feed(entered(lead, "desire", 2, "interest"))
    status = await h.status(lead)
    assert {status[f"nurture-{i}"] for i in (1, 2, 3)} == {("cancelled", "left stage interest")}
    assert status["decision-offer"] == ("scheduled", None)
    # A late, older stage event does not move the lead back or schedule anything.
    late = entered(lead, "interest", 1, "awareness")
    await h.feed(late.model_copy(update={"changed_at": late.changed_at - timedelta(hours=1)}))
    assert len(await h.touches(lead)) == 4


async def test_the_purchase_cancels_the_abandoned_cart_reminders(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), _activity(lead, "cart_abandoned"))
    assert await h.status(lead) == {
        "abandoned-cart-1": ("scheduled", None),
        "abandoned-cart-2": ("scheduled", None),
    }
    await h.feed(_activity(lead, "purchase_completed"))
    status = await h.status(lead)
    assert status["abandoned-cart-1"] == ("cancelled", "purchase_completed since the trigger")
    assert status["abandoned-cart-2"] == ("cancelled", "purchase_completed since the trigger")
    assert {"delivery-feedback", "review-request"} <= set(status)
    # A new cart after the purchase gets its own reminders (once per cart, not once ever).
    await h.feed(_activity(lead, "cart_abandoned"))
    playbooks = Counter(t["playbook"] for t in await h.touches(lead))
    assert playbooks["abandoned-cart-1"] == 2


async def test_conditions_are_checked_again_at_send_time(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), _activity(lead, "cart_abandoned"))
    # The purchase is known, but did not pass through the cancel path (e.g. restored data).
    await h.pool.execute(
        "INSERT INTO lead_activities VALUES ($1, 'purchase_completed', now())", lead
    )
    await h.make_due(lead)
    await h.send_due()
    assert (await h.status(lead))["abandoned-cart-1"] == (
        "suppressed",
        "purchase_completed since the trigger",
    )
    assert h.mail_to(f"{lead.hex[:10]}@example.com") == []


async def test_frequency_caps_make_the_second_reminder_wait_a_day(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), _activity(lead, "cart_abandoned"))
    await h.make_due(lead)
    await h.send_due()
    touches = {t["playbook"]: t for t in await h.touches(lead)}
    assert touches["abandoned-cart-1"]["status"] == "sent"
    second = touches["abandoned-cart-2"]
    assert (second["status"], second["reason"]) == ("scheduled", "frequency cap")
    wait = second["due_at"] - touches["abandoned-cart-1"]["sent_at"]
    assert timedelta(hours=23, minutes=59) < wait <= timedelta(days=1, seconds=1)
    [mail] = h.mail_to(f"{lead.hex[:10]}@example.com")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_quiet_hours_in_the_leads_zone_delay_marketing_not_transactional(
    fresh_dsn: str, infra: Stack
) -> None:
    tz = ZoneInfo("Asia/Taipei")
    local_now = datetime.now(tz)
    start = (local_now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local_now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    async with notifier_harness(
        fresh_dsn, infra.kafka_bootstrap, quiet_hours_start=start, quiet_hours_end=end
    ) as h:
        lead = uuid4()
        await h.feed(
            captured(lead, consent=("marketing",), time_zone="Asia/Taipei", locale="zh-TW"),
            entered(lead, "awareness", 0),
            _activity(lead, "cart_abandoned"),
        )
        await h.make_due(lead)
        await h.send_due()
        touches = {t["playbook"]: t for t in await h.touches(lead)}
        assert touches["welcome"]["status"] == "sent"
        cart = touches["abandoned-cart-1"]
        assert (cart["status"], cart["reason"]) == ("scheduled", "quiet hours")
        ends = cart["due_at"].astimezone(tz)
        assert ends.time() == end
        assert ends > local_now
        [welcome] = h.mail_to(f"{lead.hex[:10]}@example.com")
        assert welcome["Subject"] == "歡迎\uff01"  # the zh-Hant template, for zh-TW


async def test_erasure_removes_the_person_and_cancels_their_touches(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",)), entered(lead, "interest", 1))
    await h.feed(LeadErased(lead_id=lead, request_id=uuid4(), erased_at=datetime.now(UTC)))
    status = await h.status(lead)
    assert set(status.values()) == {("cancelled", "erased")}
    for table in ("contacts", "consents", "lead_state"):
        assert await h.pool.fetchval(f"SELECT count(*) FROM {table} WHERE lead_id = $1", lead) == 0  # noqa: S608
    await h.feed(entered(lead, "awareness", 0), captured(lead))  # late events bring nothing back
    assert len(await h.touches(lead)) == 3
    assert await h.pool.fetchval("SELECT count(*) FROM contacts WHERE lead_id = $1", lead) == 0


async def test_two_replicas_share_the_due_touches_and_send_each_once(h: Harness) -> None:
    leads = [uuid4() for _ in range(120)]
    for lead in leads:
        await h.feed(captured(lead), entered(lead, "awareness", 0))
    replicas = [h.sender, h.sender, h.sender]

    async def drain(sender: object) -> int:
        total = 0
        while handled := await sender.send_due():  # type: ignore[attr-defined]
            total += handled
        return total

    counts = await asyncio.gather(*(drain(s) for s in replicas))
    assert sum(counts) == len(leads)
    ids = Counter(str(m["Message-ID"]) for m in h.mailbox.messages())
    assert len(ids) == len(leads)
    assert set(ids.values()) == {1}
    assert len(await h.emitted("funnel.touch.sent.v1")) == len(leads)


async def test_an_smtp_server_that_is_down_delays_touches_and_never_drops_them(
    fresh_dsn: str, infra: Stack
) -> None:
    from funnel_devstack.ports import free_port

    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, touch_max_attempts=2) as h:
        down = h.settings.model_copy(update={"smtp_port": free_port()})
        lead = uuid4()
        await h.feed(captured(lead), entered(lead, "awareness", 0))
        from notifier.touches.worker import TouchSender

        for _ in range(4):  # more tries than touch_max_attempts
            await TouchSender(h.pool, down).send_due()
            await h.pool.execute("UPDATE touches SET due_at = now() WHERE lead_id = $1", lead)
        [touch] = await h.touches(lead)
        assert (touch["status"], touch["attempts"]) == ("scheduled", 4)
        assert "unreachable" in touch["last_error"]
        assert await h.send_due() == 1
        assert (await h.status(lead))["welcome"] == ("sent", None)
        assert len(h.mail_to(f"{lead.hex[:10]}@example.com")) == 1
        assert await h.emitted("funnel.touch.failed.v1") == []


async def test_a_server_deferring_recipients_delays_touches_until_the_retry_window_ends(
    fresh_dsn: str, infra: Stack
) -> None:
    """451 at RCPT (greylisting, a relay refusing for a while) queues the touch like an
    outage: more tries than touch_max_attempts leave it scheduled and nothing sent twice; it
    goes once the server accepts again. Past the retry window it fails for good, once."""
    from funnel_devstack.mailbox import accept_mail, refuse_mail

    # Retries wait seconds (not the harness's 0.01 s): each pass below is then one try per
    # touch, whatever the machine's speed; the loop makes them due again itself.
    async with notifier_harness(
        fresh_dsn,
        infra.kafka_bootstrap,
        touch_max_attempts=2,
        touch_retry_for_seconds=3600,
        retry_base_seconds=5,
    ) as h:
        patient, late = uuid4(), uuid4()
        await h.feed(captured(patient), entered(patient, "awareness", 0))
        await h.feed(captured(late), entered(late, "awareness", 0))
        # `late` fell due two hours ago: beyond the one-hour window once its tries are spent.
        await h.pool.execute(
            "UPDATE touches SET first_due_at = now() - interval '2 hours' WHERE lead_id = $1",
            late,
        )
        refuse_mail(h.mailbox.mail_dir)
        try:
            for _ in range(4):  # more tries than touch_max_attempts
                await h.send_due()
                await h.pool.execute("UPDATE touches SET due_at = now() WHERE status = 'scheduled'")
        finally:
            accept_mail(h.mailbox.mail_dir)
        [waiting] = await h.touches(patient)
        assert (waiting["status"], waiting["attempts"]) == ("scheduled", 4)
        assert waiting["last_error"].startswith("recipient deferred (451")
        [given_up] = await h.touches(late)
        assert (given_up["status"], given_up["attempts"]) == ("failed", 2)
        failed = await h.emitted("funnel.touch.failed.v1")
        assert [e["touch_id"] for e in failed] == [str(given_up["id"])]
        assert await h.send_due() == 1  # the server accepts again: the patient touch goes
        assert (await h.status(patient))["welcome"] == ("sent", None)
        assert len(h.mail_to(f"{patient.hex[:10]}@example.com")) == 1
        assert h.mail_to(f"{late.hex[:10]}@example.com") == []
