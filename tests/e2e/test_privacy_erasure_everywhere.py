"""Erasure, proved on the whole stack: after a person went through the funnel (form with a
phone, activities, a purchase, a welcome email) and asked to be forgotten, their email, phone
and names are readable nowhere: not in any table of any schema, not in any log file, not in
any record of any topic (dead-letter topics included), in the clear or through a data key the
platform still holds. The same scan finds them before the erasure, and a person who was not
erased still gets their email (their sealed details still open)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from funnel_contracts import ActivityRecorded, LeadCapturedV2, decode, parse_event
from funnel_devstack.mailbox import read_messages
from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.privacy_scan import SEALED_TYPES, data_keys_held, scan, topic_records
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

ERASED_EMAIL = "zelphira.quandtmoor@example.org"
ERASED = {
    "email": ERASED_EMAIL,
    "phone E.164": "+46708682491",
    "phone national": "0708682491",
    "phone as typed": "070-868 24 91",
    "phone spaced": "070 868 24 91",
    "first name": "Zelphira",
    "last name": "Quandtmoor",
}
KEPT_EMAIL = "wendeline.ostrakova@example.net"
KEPT = {"email": KEPT_EMAIL, "first name": "Wendeline", "phone E.164": "+46731234599"}
VISITOR = "zq-visitor-0001"
# Unique markers in every other field that can name a person (docs/decisions/0043): the
# query strings of the landing page, the referrer and an activity's page, and the visitor id.
# None may be readable in the clear on a topic even before the erasure, nor anywhere after.
MARKERS = {
    "landing page query": "zqmarklanding7731",
    "referrer query": "zqmarkreferrer7732",
    "activity page query": "zqmarkpage7733",
    "visitor id": VISITOR,
    # Words in a qualification answer, an activity's property and an offline touch's note
    # (decision 0054): sealed, the clear copies say only "*".
    "qualification answer": "zqmarkanswer7735",
    "activity property": "zqmarkproperty7736",
    "note text": "zqmarknote7737",
}
NEED = f"We need it for Zelphira's team ({MARKERS['qualification answer']})"
COMMENT = f"met at the fair, ask for {MARKERS['activity property']}"
LANDING = (
    f"https://shop.example.com/spring?email=zq%40example.org&gclid={MARKERS['landing page query']}"
)
REFERRER = f"https://news.example.net/issue?reader={MARKERS['referrer query']}"
PAGE = f"https://shop.example.com/spring?name=zelphira&click={MARKERS['activity page query']}"
# The consent text is the form's (it stays in the form's definition): sealed on the topics,
# gone from them with the person's key.
CONSENT_MARKER = "zqmarkconsent7734"


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack("privacy-e2e")
    try:
        yield stack
    finally:
        stop_stack(stack, "privacy-e2e")


def _mail_to(stack: Stack, address: str) -> list[Any]:
    return [m for m in read_messages(stack.mail_dir) if str(m["To"]).lower() == address]


async def _activities(client: StackClient, items: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(
        base_url=client.stack.url("lead-intake"), headers=client.auth, timeout=30
    ) as c:
        response = await c.post("/v1/activities", json={"activities": items})
    assert response.status_code == 202, response.text


async def _walk_the_whole_funnel(client: StackClient) -> str:
    """Anonymous page view, the form (with phone and names), pricing by email, a purchase."""
    now = datetime.now(UTC)
    await _activities(
        client,
        [{"type": "page_view", "occurred_at": (now - timedelta(minutes=5)).isoformat(),
          "visitor_id": VISITOR, "page_url": PAGE}],
    )  # fmt: skip
    posted = await client.post_form(
        {
            "email": "Zelphira.Quandtmoor@Example.org",
            "phone": "+46 70 868 24 91",
            "first_name": "Zelphira",
            "last_name": "Quandtmoor",
            "visitor_id": VISITOR,
            "landing_page": LANDING,
            "referrer": REFERRER,
            "consent": True,
            "utm_source": "newsletter",
            "utm_campaign": "privacy-spring",
            "budget": "approved",
            "need": NEED,
        },
        headers={"Idempotency-Key": "zq-form-post-1"},
    )
    assert posted.status_code == 202, posted.text
    lead_id: str = posted.json()["lead_id"]
    await _activities(
        client,
        [
            {"type": "pricing_viewed", "occurred_at": now.isoformat(), "email": ERASED_EMAIL},
            {"type": "purchase_completed", "occurred_at": (now + timedelta(seconds=1)).isoformat(),
             "lead_id": lead_id, "amount": "49.00", "currency": "SEK", "order_id": "zq-order-1",
             "properties": {"comment": COMMENT, "plan": "pro"}},
            {"type": "note_added", "occurred_at": (now + timedelta(seconds=2)).isoformat(),
             "lead_id": lead_id,
             "properties": {"text": MARKERS["note text"], "outcome": "reached"}},
        ],
    )  # fmt: skip
    return lead_id


async def _applied_everywhere(client: StackClient, lead_id: str) -> None:
    """The welcome email sent, the purchase in the tracker and in the report."""

    async def state() -> tuple[int, Any, Any]:
        return (
            len(_mail_to(client.stack, ERASED_EMAIL)),
            await client.sql(
                # the capture, the page view before it, pricing, the purchase and the note
                "SELECT count(*) FROM tracker.lead_signals WHERE lead_id = $1::uuid",
                lead_id,
            ),
            await client.sql(
                "SELECT state::text LIKE '%purchase%' FROM reporting.lead_states"
                " WHERE lead_id = $1::uuid",
                lead_id,
            ),
        )

    reached = await eventually(state, lambda s: s[0] >= 1 and s[1] == 5 and s[2] is True)
    assert reached[0] >= 1 and reached[1] == 5 and reached[2] is True, reached  # noqa: PT018


async def _erased_everywhere(client: StackClient, lead_id: str) -> None:
    async def erased() -> list[Any]:
        return [
            await client.sql(
                f"SELECT count(*) FROM {schema}.erased_leads WHERE lead_id = $1::uuid",  # noqa: S608
                lead_id,
            )
            for schema in ("tracker", "notifier", "reporting")
        ]

    assert await eventually(erased, lambda counts: counts == [1, 1, 1]) == [1, 1, 1]


async def _clear_copies(stack: Stack, lead_id: str) -> dict[str, Any]:
    """What the topics say in the clear of the person's answers and activities' properties."""
    out: dict[str, Any] = {}
    for record in await topic_records(stack):
        try:
            envelope = decode(record.key, record.value, list(record.headers))
        except ValueError:
            continue
        if envelope.type not in SEALED_TYPES:
            continue
        event = parse_event(envelope.type, envelope.data)
        if str(event.lead_id) != lead_id:
            continue
        if isinstance(event, LeadCapturedV2):
            out["qualification"] = dict(event.qualification)
        elif isinstance(event, ActivityRecorded) and event.properties:
            out[event.activity_type] = dict(event.properties)
    return out


async def _team_still_reads_them(client: StackClient, lead_id: str) -> None:
    async with httpx.AsyncClient(
        base_url=client.stack.url("lead-intake"), headers=client.auth, timeout=30
    ) as c:
        person = (await c.get(f"/v1/leads/{lead_id}")).json()
        notes = (await c.get(f"/v1/leads/{lead_id}/notes")).json()["items"]
    assert person["qualification"] == {"budget": "approved", "need": NEED}, person
    assert [(n["activity_type"], n["text"]) for n in notes] == [
        ("note_added", MARKERS["note text"])
    ]


async def test_an_erased_person_is_readable_nowhere_and_others_still_get_their_email(
    stack: Stack,
) -> None:
    client = StackClient(stack)
    async with httpx.AsyncClient(
        base_url=stack.url("lead-intake"), headers=client.auth, timeout=30
    ) as c:
        consent = await c.patch(
            "/v1/forms/demo",
            json={
                "consent_text": f"Yes, email me offers ({CONSENT_MARKER}).",
                "consent_categories": ["marketing"],
            },
        )
        assert consent.status_code == 200, consent.text
    lead_id = await _walk_the_whole_funnel(client)
    await _applied_everywhere(client, lead_id)

    keys_before = await data_keys_held(stack)
    key = keys_before[next(k for k in keys_before if str(k) == lead_id)]
    # The key as a dump writes bytea (hex), and as the key API sends it (base64url).
    key_forms = {key.hex(), base64.urlsafe_b64encode(key).rstrip(b"=").decode()}
    before = await scan(stack, [*ERASED.values(), *MARKERS.values(), CONSENT_MARKER, *key_forms])
    # The scan sees them where they rest until the erasure (intake's lead, the notifier's
    # contact), and through the person's key in the sealed lead events on the topic...
    assert {ERASED_EMAIL, "+46708682491", "Zelphira", "Quandtmoor"} <= before.tables
    assert {ERASED_EMAIL, "+46708682491", "Zelphira", "Quandtmoor"} <= before.topics_opened
    assert before.opened_events >= 1
    # The other fields travel sealed (full URLs, visitor id, consent text, the answer's, the
    # property's and the note's words)...
    assert {*MARKERS.values(), CONSENT_MARKER} <= before.topics_opened, before.report()
    # ...but nothing is ever in the clear on a topic, even now.
    assert before.topics_plain == {}, before.report()
    # What the tracker's rules match travels in the clear: the answer that is a choice, the
    # note's outcome, the property that is a choice; the words only as "*".
    clear = await _clear_copies(stack, lead_id)
    assert clear["qualification"] == {"budget": "approved", "need": "*"}, clear
    assert clear["note_added"] == {"text": "*", "outcome": "reached"}, clear
    assert clear["purchase_completed"] == {"comment": "*", "plan": "pro"}, clear
    # The team still reads the words where the key is: intake's person and its notes.
    await _team_still_reads_them(client, lead_id)
    assert key.hex() in before.tables  # the scan would find the key, too

    async with httpx.AsyncClient(
        base_url=stack.url("lead-intake"), headers=client.auth, timeout=30
    ) as c:
        erasure = await c.post("/v1/erasure-requests", json={"email": ERASED_EMAIL})
        assert erasure.status_code == 202, erasure.text
        assert erasure.json()["erased_leads"] == [lead_id]
        gone = await c.get(f"/v1/leads/{lead_id}/data-key")
        assert gone.status_code == 410
        notes = await c.get(f"/v1/leads/{lead_id}/notes")
        assert notes.status_code == 410, notes.text
        assert notes.json()["errors"][0]["field"] == "lead_id"
    await _erased_everywhere(client, lead_id)

    # Someone else arrives afterwards: their details are sealed too, and still reach them.
    kept = await client.post_form(
        {"email": KEPT_EMAIL, "first_name": "Wendeline", "phone": "+46 73 123 45 99"}
    )
    assert kept.status_code == 202, kept.text

    async def welcomed() -> int:
        return len(_mail_to(stack, KEPT_EMAIL))

    assert await eventually(welcomed, lambda n: n >= 1) >= 1
    assert "Wendeline" in _mail_to(stack, KEPT_EMAIL)[0].get_body(("plain",)).get_content()

    after = await scan(
        stack, [*ERASED.values(), *KEPT.values(), *MARKERS.values(), CONSENT_MARKER, *key_forms]
    )
    erased_found = after.anywhere() & (set(ERASED.values()) | set(MARKERS.values()) | key_forms)
    assert erased_found == set(), after.report()
    # The form's consent text stays in its definition, and on no topic in any readable form.
    on_topics = after.topics_opened.union(*after.topics_plain.values())
    assert CONSENT_MARKER not in on_topics, after.report()
    # The same scan still sees the person who was not erased, in a table and on the topic.
    assert {KEPT_EMAIL, "Wendeline", "+46731234599"} <= after.tables
    assert {KEPT_EMAIL, "Wendeline", "+46731234599"} <= after.topics_opened
    assert after.records > before.records
    assert lead_id not in {str(k) for k in await data_keys_held(stack)}
