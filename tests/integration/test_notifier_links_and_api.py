"""The notifier's HTTP side on the real PostgreSQL: playbooks through the API (validated,
scoped), unsubscribe (page and RFC 8058 one-click), open pixel and click redirect."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from funnel_contracts import ActivityRecorded
from funnel_devstack.stack import Stack
from notifier.playbooks.catalog import default_playbooks
from tests.integration.notifier_harness import Harness, captured, entered, notifier_harness

pytestmark = pytest.mark.integration

READ_ONLY_KEY = "a-key-that-may-only-read-leads-0123456789"


@pytest.fixture
async def h(fresh_dsn: str, infra: Stack) -> AsyncIterator[Harness]:
    keys = [
        {
            "name": "crm",
            "sha256": hashlib.sha256(READ_ONLY_KEY.encode()).hexdigest(),
            "scopes": ["leads:read"],
        }
    ]
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap, api_keys=keys) as harness:
        yield harness


PLAYBOOK_YAML = """
name: spring-sale
trigger: {type: stage_entered, stages: [desire]}
delay: PT10M
conditions: {still_in_stage: true}
templates:
  en:
    subject: "Spring sale, {{ first_name }}"
    text: |
      Hi {{ first_name }},
      20% off: {{ tracked("https://shop.example/sale") }}
      Unsubscribe: {{ unsubscribe_url }}
    html: |
      <p>Hi {{ first_name }},</p>
      <p><a href="{{ tracked('https://shop.example/sale') }}">20% off</a></p>
      <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
  sv:
    subject: "Vårrea, {{ first_name }}"
    text: "Hej! {{ tracked('https://shop.example/rea') }} Avregistrera: {{ unsubscribe_url }}"
"""


async def test_playbooks_need_the_touches_admin_scope(h: Harness) -> None:
    async with h.api() as api:
        anonymous = await api.get("/v1/playbooks", headers={"Authorization": ""})
        assert anonymous.status_code == 401
        reader = await api.get(
            "/v1/playbooks", headers={"Authorization": f"Bearer {READ_ONLY_KEY}"}
        )
        assert reader.status_code == 403
        assert reader.headers["content-type"] == "application/problem+json"
        listing = await api.get("/v1/playbooks")
        assert listing.status_code == 200
        names = {p["name"]: p["origin"] for p in listing.json()["playbooks"]}
        assert names["welcome"] == "shipped"
        assert names == dict.fromkeys(default_playbooks(), "shipped")  # every shipped one
        missing = await api.get("/v1/playbooks/nope")
        assert missing.status_code == 404


async def test_a_playbook_saved_in_yaml_is_validated_and_used(h: Harness) -> None:
    async with h.api() as api:
        saved = await api.put(
            "/v1/playbooks/spring-sale",
            content=PLAYBOOK_YAML,
            headers={"content-type": "application/yaml"},
        )
        assert saved.status_code == 200, saved.text
        assert (saved.json()["origin"], saved.json()["version"]) == ("saved", 1)
        again = await api.put(
            "/v1/playbooks/spring-sale",
            content=PLAYBOOK_YAML,
            headers={"content-type": "application/yaml"},
        )
        assert again.json()["version"] == 2
    lead = uuid4()
    await h.feed(captured(lead, consent=("marketing",), locale="sv-SE"), entered(lead, "desire", 2))
    await h.make_due(lead, "spring-sale")
    await h.send_due()
    assert (await h.status(lead))["spring-sale"] == ("sent", None)
    [mail] = h.mail_to(f"{lead.hex[:10]}@example.com")
    assert mail["Subject"] == "Vårrea, Ada"
    assert mail["Content-Language"] == "sv"
    text = mail.get_body(("plain",)).get_content()
    assert "https://notifier.test/t/c/" in text
    assert "shop.example" not in text  # the target is inside the signed token


@pytest.mark.parametrize(
    ("template", "field", "line", "message"),
    [
        ("Hi\n{{ first_nam }}\n{{ unsubscribe_url }}", "templates.en.text", 2, "first_nam"),
        ("Hi\n\n{% if x %}\n{{ unsubscribe_url }}", "templates.en.text", 4, "end of template"),
        ("{{ ''.__class__.__mro__ }} {{ unsubscribe_url }}", "templates.en.text", 1, "unsafe"),
        ("Buy now", "templates.en.text", None, "unsubscribe_url"),
    ],
)
async def test_a_template_that_does_not_render_is_refused_with_its_line(
    h: Harness, template: str, field: str, line: int | None, message: str
) -> None:
    body = {
        "trigger": {"type": "stage_entered", "stages": ["desire"]},
        "templates": {"en": {"subject": "S", "text": template}},
    }
    async with h.api() as api:
        response = await api.put("/v1/playbooks/broken", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert error.get("line") == line
    assert message in error["message"]
    assert await h.pool.fetchval("SELECT count(*) FROM playbooks") == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ("name: [unclosed", "application/yaml", 422, "body"),
        ('{"trigger": {"type": "stage_entered"}}', "application/json", 422, "trigger"),
        ('{"name": "other", "trigger": {"type": "activity", "activity_types": ["x"]}, '
         '"template": "welcome"}', "application/json", 422, "name"),
        ('{"trigger": {"type": "activity", "activity_types": ["x"]}, "template": "nope"}',
         "application/json", 422, "template"),
        ('{"trigger": {"type": "activity", "activity_types": ["x"]}, "channel": "webhook", '
         '"webhook": {"url": "https://evil.example/x"}}', "application/json", 422, "webhook.url"),
        ("trigger: x", "text/plain", 415, None),
    ],
)  # fmt: skip
async def test_bad_playbooks_are_problems_naming_the_field(
    h: Harness, body: str, content_type: str, status: int, field: str | None
) -> None:
    async with h.api() as api:
        response = await api.put(
            "/v1/playbooks/p1", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in {e["field"].split(".")[0] if field != "webhook.url" else e["field"]
                         for e in response.json()["errors"]}  # fmt: skip


async def test_a_shipped_playbook_can_be_switched_off_and_back(h: Harness) -> None:
    async with h.api() as api:
        welcome = (await api.get("/v1/playbooks/welcome")).json()
        off = {
            k: v
            for k, v in welcome.items()
            if k not in ("origin", "version", "updated_at", "warnings")
        }
        off["enabled"] = False
        assert (await api.put("/v1/playbooks/welcome", json=off)).status_code == 200
        lead = uuid4()
        await h.feed(captured(lead), entered(lead, "awareness", 0))
        assert await h.touches(lead) == []
        assert (await api.delete("/v1/playbooks/welcome")).status_code == 204
        assert (await api.get("/v1/playbooks/welcome")).json()["origin"] == "shipped"
        assert (await api.delete("/v1/playbooks/welcome")).status_code == 404


async def _marketing_mail(h: Harness) -> tuple[object, str]:
    """A lead with consent and one sent abandoned-cart reminder; its token links."""
    lead = uuid4()
    now = datetime.now(UTC)
    cart = ActivityRecorded(
        lead_id=lead, activity_id=uuid4(), activity_type="cart_abandoned",
        occurred_at=now, recorded_at=now,
    )  # fmt: skip
    await h.feed(captured(lead, consent=("marketing",)), cart)
    await h.make_due(lead, "abandoned-cart-1")
    await h.send_due()
    [mail] = h.mail_to(f"{lead.hex[:10]}@example.com")
    return lead, str(mail.get_body(("html",)).get_content()) + str(mail["List-Unsubscribe"])


async def test_one_click_unsubscribe_withdraws_consent_once_and_stops_marketing(
    h: Harness,
) -> None:
    lead, mail = await _marketing_mail(h)
    unsubscribe = re.search(r"<(https://notifier\.test/t/u/[^>]+)>", mail)
    assert unsubscribe is not None
    path = unsubscribe.group(1).removeprefix("https://notifier.test")
    async with h.api() as api:
        page = await api.get(path, headers={"Authorization": ""})
        assert page.status_code == 200
        assert '<form method="post">' in page.text
        # No script runs on it, and no other site may frame its button.
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert await h.emitted("funnel.consent.changed.v1") == []  # a GET changes nothing
        for _ in range(2):  # a repeat is harmless
            done = await api.post(
                path,
                content="List-Unsubscribe=One-Click",
                headers={"Authorization": "", "content-type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200
            assert "frame-ancestors 'none'" in done.headers["content-security-policy"]
        forged = await api.post(path[:-3] + "abc", content="List-Unsubscribe=One-Click")
        assert forged.status_code == 404
    [changed] = await h.emitted("funnel.consent.changed.v1")
    assert (changed["lead_id"], changed["category"], changed["granted"], changed["source"]) == (
        str(lead),
        "marketing",
        False,
        "one-click",
    )
    status = await h.status(lead)  # type: ignore[arg-type]
    assert status["abandoned-cart-2"] == ("suppressed", "unsubscribed from marketing")
    granted = await h.pool.fetchval(
        "SELECT granted FROM consents WHERE lead_id = $1 AND category = 'marketing'", lead
    )
    assert granted is False


async def test_the_open_pixel_and_the_click_redirect_emit_engagement_once(h: Harness) -> None:
    lead, mail = await _marketing_mail(h)
    pixel = re.search(r'src="https://notifier\.test(/t/o/[^"]+)"', mail)
    click = re.search(r'href="https://notifier\.test(/t/c/[^"]+)"', mail)
    assert pixel is not None
    assert click is not None
    async with h.api() as api:
        for _ in range(2):
            gif = await api.get(pixel.group(1), headers={"Authorization": ""})
            assert gif.status_code == 200
            assert gif.headers["content-type"] == "image/gif"
            assert gif.content.startswith(b"GIF89a")
            hop = await api.get(click.group(1), headers={"Authorization": ""})
            assert hop.status_code == 302
            assert hop.headers["location"] == "https://www.example.com/cart"
        tampered = await api.get(click.group(1)[:-4] + "AAAA")
        assert tampered.status_code == 404
        assert "location" not in tampered.headers
    [opened] = await h.emitted("funnel.touch.opened.v1")
    [clicked] = await h.emitted("funnel.touch.clicked.v1")
    assert opened["lead_id"] == clicked["lead_id"] == str(lead)
    assert clicked["url"] == "https://www.example.com/cart"
    touches = {t["playbook"]: t for t in await h.touches(lead)}  # type: ignore[arg-type]
    assert touches["abandoned-cart-1"]["opened_at"] is not None
    assert json.loads(json.dumps(opened["touch_id"])) == str(touches["abandoned-cart-1"]["id"])


async def test_the_touches_of_a_lead_say_why_they_were_not_sent(h: Harness) -> None:
    lead = uuid4()
    await h.feed(captured(lead), entered(lead, "awareness", 0), entered(lead, "interest", 1))
    await h.make_due(lead, "nurture-1")
    await h.send_due()
    async with h.api() as api:
        denied = await api.get(f"/v1/leads/{lead}/touches", headers={"Authorization": ""})
        assert denied.status_code == 401
        response = await api.get(
            f"/v1/leads/{lead}/touches", headers={"Authorization": f"Bearer {READ_ONLY_KEY}"}
        )
        bad = await api.get("/v1/leads/not-a-uuid/touches")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "lead_id"
    touches = {t["playbook"]: t for t in response.json()["touches"]}
    assert touches["welcome"]["status"] == "sent"
    assert touches["welcome"]["message_id"] == f"<touch-{touches['welcome']['id']}@funnel.example>"
    assert (touches["nurture-1"]["status"], touches["nurture-1"]["reason"]) == (
        "suppressed",
        "consent for marketing not given",
    )
    assert touches["nurture-2"]["status"] == "scheduled"
