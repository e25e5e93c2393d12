"""Webhook configuration per form: Meta lead forms mapped to our forms, secrets per form with
rotation, on the real database (payloads shaped as each platform documents them)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from funnel_devstack.stack import Stack
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks.models import timed_signature
from lead_intake.webhooks.worker import MetaFetcher
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake
from tests.integration.test_intake_webhooks import (
    META_NOTICE,
    TYPEFORM_PAYLOAD,
    FakeGraph,
    graph_server,
)

pytestmark = pytest.mark.integration
META_SECRET = "meta-app-secret-config-0123"
GLOBAL_HMAC = "service-wide-hmac-secret-000"
GLOBAL_TYPEFORM = "service-wide-typeform-000"
WEBINAR_FORM = "1234567890123"  # a Meta lead form that has a mapping
OTHER_FORM = "9999999999999"  # one that has none


def _lead(leadgen_id: str, email: str, extra: list[dict[str, Any]]) -> dict[str, Any]:
    """A lead as Graph's GET /{lead-id}?fields=id,created_time,field_data answers."""
    return {
        "created_time": "2026-11-01T09:30:00+0000",
        "id": leadgen_id,
        "field_data": [{"name": "email", "values": [email]}, *extra],
    }


@pytest.fixture
def graph() -> Iterator[tuple[FakeGraph, str]]:
    fake = FakeGraph(
        failures=0,
        leads={
            "111": _lead(
                "111",
                "webinar@example.com",
                [
                    {"name": "company_name", "values": ["Acme"]},
                    {"name": "what_is_your_budget?", "values": ["50k"]},
                ],
            ),
            "222": _lead("222", "general@example.com", [{"name": "company_name", "values": ["X"]}]),
        },
    )
    with graph_server(fake) as url:
        yield fake, url


@pytest.fixture
async def intake(
    fresh_dsn: str, infra: Stack, graph: tuple[FakeGraph, str]
) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn,
        infra.kafka_bootstrap,
        meta_app_secret=META_SECRET,
        meta_access_token="graph-token",
        meta_graph_base_url=graph[1],
        meta_form_id="meta-leads",
        webhook_hmac_secret=GLOBAL_HMAC,
        typeform_secret=GLOBAL_TYPEFORM,
    ) as running:
        await running.create_form("meta-leads", allow_unknown_fields=True)
        await running.create_form(
            "webinar",
            funnel_id="b2b-sales-cycle",
            fields=[{"name": "company"}, {"name": "budget"}],
            field_map={"what_is_your_budget?": "budget"},
        )
        await running.create_form("partner", field_map={"contact.email": "email"})
        await running.create_form(
            "survey", fields=[{"name": "plan"}], field_map={"plan_ref": "plan"}
        )
        yield running


def _notice(*changes: tuple[str, str]) -> dict[str, Any]:
    """Meta's documented leadgen notification, one change per (leadgen_id, Meta form id)."""
    notice: dict[str, Any] = copy.deepcopy(META_NOTICE)
    template = notice["entry"][0]["changes"][0]
    notice["entry"][0]["changes"] = [
        {**template, "value": {**template["value"], "leadgen_id": lead, "form_id": form}}
        for lead, form in changes
    ]
    return notice


def _hex(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _typeform(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


async def test_the_meta_form_mapping_api(intake: Intake) -> None:
    body = {"form_id": "webinar", "field_map": {"company_name": "company"}}
    anonymous = await intake.client.put(f"/v1/meta-forms/{WEBINAR_FORM}", json=body)
    created = await intake.client.put(f"/v1/meta-forms/{WEBINAR_FORM}", json=body, headers=ADMIN)
    replaced = await intake.client.put(
        f"/v1/meta-forms/{WEBINAR_FORM}", json={**body, "field_map": {}}, headers=ADMIN
    )
    unknown_form = await intake.client.put(
        f"/v1/meta-forms/{OTHER_FORM}", json={"form_id": "nope"}, headers=ADMIN
    )
    bad_map = await intake.client.put(
        f"/v1/meta-forms/{OTHER_FORM}",
        json={"form_id": "webinar", "field_map": {"q": "Not A Field"}},
        headers=ADMIN,
    )
    listed = await intake.client.get("/v1/meta-forms", headers=ADMIN)
    missing = await intake.client.get(f"/v1/meta-forms/{OTHER_FORM}", headers=ADMIN)
    deleted = await intake.client.delete(f"/v1/meta-forms/{WEBINAR_FORM}", headers=ADMIN)
    gone = await intake.client.get(f"/v1/meta-forms/{WEBINAR_FORM}", headers=ADMIN)

    assert anonymous.status_code == 401
    assert created.status_code == 201, created.text
    assert created.json()["field_map"] == {"company_name": "company"}
    assert (replaced.status_code, replaced.json()["field_map"]) == (200, {})
    assert unknown_form.status_code == 422
    assert [e["field"] for e in unknown_form.json()["errors"]] == ["form_id"]
    assert bad_map.status_code == 422
    assert [e["field"] for e in bad_map.json()["errors"]] == ["field_map"]
    assert [m["meta_form_id"] for m in listed.json()["meta_forms"]] == [WEBINAR_FORM]
    assert missing.status_code == 404
    assert (deleted.status_code, gone.status_code) == (204, 404)


async def test_meta_leads_join_the_form_their_meta_form_maps_to(
    intake: Intake, graph: tuple[FakeGraph, str]
) -> None:
    await intake.client.put(
        f"/v1/meta-forms/{WEBINAR_FORM}",
        json={"form_id": "webinar", "field_map": {"company_name": "company"}},
        headers=ADMIN,
    )
    body = json.dumps(_notice(("111", WEBINAR_FORM), ("222", OTHER_FORM))).encode()
    received = await intake.client.post(
        "/v1/webhooks/meta", content=body, headers={"x-hub-signature-256": _hex(META_SECRET, body)}
    )

    assert received.status_code == 200, received.text
    pending = await intake.pool.fetch(
        "SELECT external_id, form_id FROM pending_platform_leads ORDER BY external_id"
    )
    assert [(r["external_id"], r["form_id"]) for r in pending] == [
        ("111", "webinar"),
        ("222", "meta-leads"),  # no mapping: the service-wide Meta form
    ]

    settings = IntakeSettings(
        database_url="unused",
        meta_access_token="graph-token",
        meta_graph_base_url=graph[1],
        db_schema="intake",
    )
    async with httpx.AsyncClient(timeout=5) as client:
        assert await MetaFetcher(intake.pool, settings, client).fetch_due() == 2

    assert await intake.count("pending_platform_leads") == 0
    rows = await intake.pool.fetch(
        """SELECT l.email, s.form_id, s.custom_fields, s.qualification, s.source
           FROM submissions s JOIN leads l ON l.id = s.lead_id ORDER BY l.email"""
    )
    assert [(r["email"], r["form_id"], r["source"]) for r in rows] == [
        ("general@example.com", "meta-leads", "meta-lead-ads"),
        ("webinar@example.com", "webinar", "meta-lead-ads"),
    ]
    # The Meta form's own name (company_name) and the form's (the budget question) both map.
    assert rows[1]["custom_fields"] == {"company": "Acme"}
    assert rows[1]["qualification"] == {"budget": "50k"}
    assert rows[0]["custom_fields"] == {}  # the general form maps no company question
    funnels = {
        getattr(e, "form_id", None): getattr(e, "funnel_id", None) for e in await intake.events()
    }
    assert funnels == {"webinar": "b2b-sales-cycle", "meta-leads": "digital-sales"}


async def test_a_meta_notice_with_no_form_to_join_is_refused_for_a_redelivery(
    intake: Intake,
) -> None:
    await intake.pool.execute("UPDATE forms SET id = 'renamed' WHERE id = 'meta-leads'")
    intake.app.state.runtime.context.form_cache.forget("meta-leads")
    body = json.dumps(_notice(("333", OTHER_FORM))).encode()
    refused = await intake.client.post(
        "/v1/webhooks/meta", content=body, headers={"x-hub-signature-256": _hex(META_SECRET, body)}
    )

    assert refused.status_code == 503
    assert await intake.count("pending_platform_leads") == 0


async def test_a_form_secret_replaces_the_service_wide_one_and_rotates_with_grace(
    intake: Intake,
) -> None:
    url = "/v1/forms/partner/webhooks/generic"

    async def deliver(n: int, secret: str) -> int:
        body = json.dumps({"id": f"evt-{n}", "contact": {"email": f"p{n}@example.com"}}).encode()
        response = await intake.client.post(
            url,
            content=body,
            headers={"x-funnel-signature": timed_signature(secret, body, int(time.time()))},
        )
        return response.status_code

    assert await deliver(1, GLOBAL_HMAC) == 200  # no secret of its own yet

    first = await intake.client.post(
        "/v1/forms/partner/webhook-secrets/generic",
        json={"secret": "partner-secret-one-0001"},
        headers=ADMIN,
    )
    assert first.status_code == 200, first.text
    assert first.json()["hint"] == "…0001"
    assert first.json()["secret"] is None  # chosen by the caller: never echoed
    assert (await deliver(2, GLOBAL_HMAC), await deliver(3, "partner-secret-one-0001")) == (
        401,
        200,
    )

    rotated = await intake.client.post(
        "/v1/forms/partner/webhook-secrets/generic",
        json={"previous_valid_seconds": 3600},
        headers=ADMIN,
    )
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")  # generated, shown this once
    assert rotated.json()["previous_hint"] == "…0001"
    # During the grace period both work: the sender switches over without losing deliveries.
    assert (await deliver(4, new_secret), await deliver(5, "partner-secret-one-0001")) == (
        200,
        200,
    )

    listed = await intake.client.get("/v1/forms/partner/webhook-secrets", headers=ADMIN)
    assert new_secret not in listed.text
    assert "partner-secret-one-0001" not in listed.text
    assert [s["hint"] for s in listed.json()["secrets"]] == [f"…{new_secret[-4:]}"]

    await intake.pool.execute(
        "UPDATE form_webhook_secrets SET previous_valid_until = now() - interval '1 second'"
    )
    assert (await deliver(6, "partner-secret-one-0001"), await deliver(7, new_secret)) == (401, 200)

    dropped = await intake.client.delete("/v1/forms/partner/webhook-secrets/generic", headers=ADMIN)
    assert dropped.status_code == 204
    assert await deliver(8, GLOBAL_HMAC) == 200
    assert await intake.count("leads") == 6  # evt-1, 3, 4, 5, 7, 8


async def test_typeform_secrets_are_per_form(intake: Intake) -> None:
    await intake.client.post(
        "/v1/forms/survey/webhook-secrets/typeform",
        json={"secret": "survey-typeform-secret-1"},
        headers=ADMIN,
    )
    body = json.dumps(TYPEFORM_PAYLOAD).encode()
    url = "/v1/forms/survey/webhooks/typeform"
    old = await intake.client.post(
        url, content=body, headers={"typeform-signature": _typeform(GLOBAL_TYPEFORM, body)}
    )
    ok = await intake.client.post(
        url,
        content=body,
        headers={"typeform-signature": _typeform("survey-typeform-secret-1", body)},
    )

    assert old.status_code == 401
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/v1/forms/partner/webhook-secrets/mailchimp", {}, 422),
        ("post", "/v1/forms/partner/webhook-secrets/generic", {"secret": "short"}, 422),
        ("post", "/v1/forms/partner/webhook-secrets/generic", {"previous_valid_seconds": -1}, 422),
        ("post", "/v1/forms/nope/webhook-secrets/generic", {}, 404),
        ("get", "/v1/forms/nope/webhook-secrets", None, 404),
        ("delete", "/v1/forms/partner/webhook-secrets/typeform", None, 404),
    ],
    ids=["platform", "short", "grace", "form", "list-form", "no-secret"],
)
async def test_bad_secret_requests_name_the_field(
    intake: Intake, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    kwargs: dict[str, Any] = {"headers": ADMIN} | ({"json": body} if body is not None else {})
    response = await getattr(intake.client, method)(path, **kwargs)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"]
    assert await intake.count("form_webhook_secrets") == 0
