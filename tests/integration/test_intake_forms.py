"""The form registry on the real database: the auth matrix, create, list, get, update."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from funnel_devstack.stack import Stack
from funnel_servicekit.auth import hash_key
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
READER_KEY = "intake-test-reader-key-abcdefghijklmnop"


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    keys = [{"name": "reader", "sha256": hash_key(READER_KEY), "scopes": ["leads:read"]}]
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, api_keys=json.loads(json.dumps(keys))
    ) as running:
        yield running


FORM = {
    "id": "webinar",
    "funnel_id": "b2b-sales-cycle",
    "name": "Webinar sign-up",
    "site_url": "https://acme.example",
    "allowed_origins": ["https://acme.example", "https://WWW.acme.example:8443"],
    "fields": [
        {"name": "email", "type": "email", "required": True},
        {"name": "role", "type": "select", "options": ["cto", "cfo"], "required": True},
        {"name": "notes", "type": "textarea", "max_length": 500},
    ],
    "consent_text": "Keep me posted.",
    "default_phone_region": "gb",
    "thank_you_message": "See you there!",
}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {READER_KEY}"}, 403),
    ],
    ids=["anonymous", "unknown-key", "missing-scope"],
)
async def test_the_registry_needs_a_key_with_forms_admin(
    intake: Intake, headers: dict[str, str], status: int
) -> None:
    for method, path, body in [
        ("POST", "/v1/forms", FORM),
        ("GET", "/v1/forms", None),
        ("GET", "/v1/forms/webinar", None),
        ("PUT", "/v1/forms/webinar", FORM),
        ("PATCH", "/v1/forms/webinar", {"name": "x"}),
    ]:
        response = await intake.client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await intake.count("forms") == 0


async def test_create_get_list_and_update_a_form(intake: Intake) -> None:
    created = await intake.client.post("/v1/forms", json=FORM, headers=ADMIN)
    again = await intake.client.post("/v1/forms", json=FORM, headers=ADMIN)
    fetched = await intake.client.get("/v1/forms/webinar", headers=ADMIN)
    patched = await intake.client.patch(
        "/v1/forms/webinar",
        json={"thank_you_url": "https://acme.example/thanks", "name": "Webinar"},
        headers=ADMIN,
    )
    missing = await intake.client.get("/v1/forms/nope", headers=ADMIN)

    assert created.status_code == 201, created.text
    form = created.json()
    assert form["public_key"].startswith("pk_")
    assert form["allowed_origins"] == ["https://acme.example", "https://www.acme.example:8443"]
    assert form["default_phone_region"] == "GB"
    assert again.status_code == 409
    assert fetched.json() == form
    assert patched.status_code == 200
    assert patched.json()["name"] == "Webinar"
    assert patched.json()["thank_you_url"] == "https://acme.example/thanks"
    assert patched.json()["fields"] == fetched.json()["fields"]  # untouched
    assert patched.json()["public_key"] == form["public_key"]
    assert missing.status_code == 404
    assert [e["field"] for e in missing.json()["errors"]] == ["form_id"]

    for i in range(3):
        await intake.client.put(
            f"/v1/forms/extra-{i}", json={"funnel_id": "digital-sales", "name": "x"}, headers=ADMIN
        )
    page1 = (await intake.client.get("/v1/forms?limit=2", headers=ADMIN)).json()
    page2 = (
        await intake.client.get(f"/v1/forms?limit=2&after={page1['next_after']}", headers=ADMIN)
    ).json()
    assert [f["id"] for f in page1["forms"]] == ["extra-0", "extra-1"]
    assert [f["id"] for f in page2["forms"]] == ["extra-2", "webinar"]
    assert page2["next_after"] == "webinar"


async def test_declared_fields_rule_the_form_posts(intake: Intake) -> None:
    await intake.client.post("/v1/forms", json=FORM, headers=ADMIN)
    missing_role = await intake.client.post(
        "/v1/forms/webinar/submissions", json={"email": "a@example.com"}
    )
    long_notes = await intake.client.post(
        "/v1/forms/webinar/submissions",
        json={"email": "a@example.com", "role": "cto", "notes": "n" * 501},
    )
    ok = await intake.client.post(
        "/v1/forms/webinar/submissions",
        json={"email": "a@example.com", "role": "cto", "phone": "020 7946 0018"},
    )

    assert missing_role.status_code == 422
    assert [e["field"] for e in missing_role.json()["errors"]] == ["role"]
    assert long_notes.status_code == 422
    assert [e["field"] for e in long_notes.json()["errors"]] == ["notes"]
    assert ok.status_code == 202
    assert await intake.val("SELECT phone FROM leads") == "+442079460018"  # the form's region


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"allowed_origins": ["https://acme.example/path"]}, "allowed_origins"),
        ({"default_phone_region": "XX"}, "default_phone_region"),
        ({"thank_you_url": "javascript:alert(1)"}, "thank_you_url"),
        ({"rate_limit_per_ip": "lots"}, "rate_limit_per_ip"),
        ({"fields": [{"name": "size", "type": "select"}]}, "fields.0"),
        ({"funnel_id": "Not An Id"}, "funnel_id"),
        ({"surprise": 1}, "surprise"),
    ],
    ids=["origin-with-path", "region", "url", "rate", "select-options", "funnel-id", "unknown"],
)
async def test_an_invalid_definition_is_a_problem_naming_the_field(
    intake: Intake, change: dict[str, object], field: str
) -> None:
    response = await intake.client.post("/v1/forms", json={**FORM, **change}, headers=ADMIN)

    assert response.status_code == 422
    assert any(e["field"] == field for e in response.json()["errors"]), response.json()
    assert await intake.count("forms") == 0


async def test_rotating_the_public_key(intake: Intake) -> None:
    form = (await intake.client.post("/v1/forms", json=FORM, headers=ADMIN)).json()
    rotated = await intake.client.post("/v1/forms/webinar/public-key/rotate", headers=ADMIN)

    assert rotated.status_code == 200
    assert rotated.json()["public_key"] not in (form["public_key"], None)


async def test_a_form_is_not_saved_unchecked_while_the_tracker_cannot_answer(
    fresh_dsn: str, infra: Stack
) -> None:
    from funnel_devstack.ports import free_port

    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: the tracker is down
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, tracker_url=nobody, tracker_timeout_seconds=1
    ) as running:
        answer = await running.client.post("/v1/forms", json=FORM, headers=ADMIN)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["type"] == "urn:funnel:problem:dependency-unavailable"
        assert (await running.client.get("/v1/forms/webinar", headers=ADMIN)).status_code == 404
