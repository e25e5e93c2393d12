"""Imports of existing contacts on the real database: CSV and JSON, a mapping, HubSpot's and
Mautic's exports, known people skipped or filled in, the same file twice, the bad input
answers (nothing stored), and a large import answered at once and worked through after."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2
from funnel_devstack.stack import Stack
from lead_intake.imports import service
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent / "data"
CSV = {**ADMIN, "content-type": "text/csv"}


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, import_max_rows=50, import_inline_rows=20,
        import_batch_size=4,
    ) as running:  # fmt: skip
        await running.create_form(
            "shop",
            default_phone_region="US",
            consent_text="Yes, email me",
            consent_categories=["marketing"],
        )
        yield running


async def _csv(intake: Intake, text: str, headers: dict[str, str] | None = None, **params: Any):  # type: ignore[no-untyped-def]
    return await intake.client.post(
        "/v1/leads/import",
        params={"form_id": "shop", **params},
        content=text.encode(),
        headers={**CSV, **(headers or {})},
    )


async def _captured(intake: Intake) -> dict[str, LeadCapturedV2]:
    found = {}
    for event in await intake.events("funnel.lead.captured.v2"):
        assert isinstance(event, LeadCapturedV2)
        person = await intake.person(event)
        found[person.email or person.phone or ""] = event
    return found


async def test_a_csv_carries_phones_consent_locale_answers_custom_fields_and_stage(
    intake: Intake,
) -> None:
    text = (
        "E-mail,Mobile,Given name,captured_at,consent,consent_at,consent_categories,"
        "locale,time_zone,budget,qualification.seats,Shoe size,stage,entered_at,utm_source\n"
        "ada@example.com,,Ada,2024-03-05T12:00:00Z,yes,2024-03-01 10:00,"
        "marketing;product-news,sv-SE,Europe/Stockholm,yes,12,42,desire,2024-04-01,fair\n"
        ",(201) 555-0123,Phone Only,2024-03-06,,,,,,,,,,,\n"
        "bad@example.com,,,not a date,,,,,Mars/Olympus,,,,,,\n"
        '"quoted@example.com",,"Multi\nLine",,,,,,,,,,,,\n'
    )
    mapping = {"E-mail": "email", "Mobile": "phone", "Given name": "first_name",
               "Shoe size": "custom.shoe_size"}  # fmt: skip
    response = await _csv(intake, text, mapping=json.dumps(mapping))

    assert response.status_code == 202, response.text
    body = response.json()
    counts = ("status", "rows", "imported", "existing", "updated", "failed")
    assert [body[k] for k in counts] == ["done", 4, 3, 0, 0, 1]
    assert sorted((e["row"], e["field"]) for e in body["errors"]) == [
        (3, "captured_at"), (3, "time_zone"),
    ]  # fmt: skip
    assert body["lead_ids"][2] is None
    assert await intake.val("SELECT count(*) FROM import_rows") == 0  # staged rows are gone

    captured = await _captured(intake)
    ada = captured["ada@example.com"]
    assert ada.source == "import"
    assert ada.captured_at == datetime(2024, 3, 5, 12, tzinfo=UTC)
    assert (ada.imported_stage, ada.stage_entered_at) == (
        "desire", datetime(2024, 4, 1, tzinfo=UTC),
    )  # fmt: skip
    assert ada.consent is not None
    assert ada.consent.categories == ("marketing", "product-news")
    assert ada.consent.given_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert ada.consent.text == ""  # the consent's words travel sealed, with the person
    assert (ada.locale, ada.time_zone) == ("sv-SE", "Europe/Stockholm")
    assert ada.qualification == {"budget": "yes", "seats": "12"}
    assert ada.utm.source == "fair"
    person = await intake.person(ada)
    assert (person.first_name, person.custom_fields) == ("Ada", {"shoe_size": "42"})
    assert person.consent_text == "Yes, email me"

    phone_only = captured["+12015550123"]
    assert (phone_only.has_email, phone_only.has_phone, phone_only.imported_stage) == (
        False, True, None,
    )  # fmt: skip
    assert phone_only.captured_at == datetime(2024, 3, 6, tzinfo=UTC)
    assert (await intake.person(captured["quoted@example.com"])).first_name == "Multi Line"


async def test_hubspot_and_mautic_exports_import_with_their_mappings(intake: Intake) -> None:
    hubspot = await _csv(intake, (DATA / "hubspot_contacts.csv").read_text(), mapping="hubspot")
    mautic = await _csv(intake, (DATA / "mautic_contacts.csv").read_text(), preset="mautic")

    assert hubspot.status_code == 202, hubspot.text
    assert (hubspot.json()["imported"], hubspot.json()["failed"]) == (2, 1)
    assert [(e["row"], e["field"]) for e in hubspot.json()["errors"]] == [(3, "email")]
    assert mautic.status_code == 202, mautic.text
    assert (mautic.json()["imported"], mautic.json()["failed"]) == (2, 0)
    captured = await _captured(intake)
    ada = captured["ada@example.com"]
    assert ada.captured_at == datetime(2024, 3, 5, 12, tzinfo=UTC)
    ada_person = await intake.person(ada)
    assert ada_person.phone == "+442079460958"
    assert ada_person.custom_fields == {
        "hubspot_id": "51", "hubspot_lifecycle_stage": "lead", "hubspot_lead_status": "NEW",
        "original_source": "Organic Search",
    }  # fmt: skip
    assert "grace@example.com" in captured
    katherine = captured["katherine@example.com"]
    assert (katherine.locale, katherine.time_zone) == ("en-US", "America/New_York")
    assert katherine.captured_at == datetime(2024, 2, 1, 9, 15, tzinfo=UTC)
    assert (await intake.person(katherine)).custom_fields == {
        "mautic_id": "7", "company": "NASA", "job_title": "Mathematician", "mautic_points": "25",
        "city": "Hampton", "country": "United States", "tags": "space|math",
    }  # fmt: skip
    hedy = captured["+12135550188"]  # phone only (Mautic's mobile)
    assert (hedy.locale, hedy.time_zone, hedy.has_email) == ("de", "Europe/Vienna", False)


async def test_known_people_are_skipped_or_filled_in_never_blanked(intake: Intake) -> None:
    first = await intake.client.post(
        "/v1/forms/shop/submissions",
        json={"email": "known@example.com", "first_name": "Kim", "consent": "yes"},
    )
    lead_id = first.json()["lead_id"]
    old_consent = await intake.val("SELECT consent->>'given_at' FROM leads WHERE id = $1", lead_id)
    newer = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    text = (
        "email,first_name,last_name,locale,consent,consent_at\n"
        f"known@example.com,,Knox,fr,yes,{newer}\n"
    )
    skipped = await _csv(intake, text)
    assert (skipped.json()["existing"], skipped.json()["updated"]) == (1, 0)
    assert await intake.val("SELECT last_name FROM leads WHERE id = $1", lead_id) is None

    updated = await _csv(intake, text, on_existing="update")
    assert updated.status_code == 202, updated.text
    assert (updated.json()["existing"], updated.json()["updated"]) == (0, 1)
    row = await intake.pool.fetchrow(
        "SELECT first_name, last_name, locale, consent FROM leads WHERE id = $1", lead_id
    )
    assert (row["first_name"], row["last_name"], row["locale"]) == ("Kim", "Knox", "fr")
    assert row["consent"]["given_at"] != old_consent
    [event] = [e for e in await intake.events("funnel.lead.updated.v2")
               if isinstance(e, LeadUpdatedV2) and e.source == "import"]  # fmt: skip
    person = await intake.person(event)
    assert (person.first_name, person.last_name, event.locale) == ("Kim", "Knox", "fr")

    older = "email,first_name,last_name,consent,consent_at\nknown@example.com,Bo,,yes,2020-01-01\n"
    again = await _csv(intake, older, on_existing="update")
    assert (again.json()["existing"], again.json()["updated"]) == (1, 0)  # nothing to fill
    row = await intake.pool.fetchrow(
        "SELECT first_name, last_name, consent FROM leads WHERE id = $1", lead_id
    )
    assert (row["first_name"], row["last_name"]) == ("Kim", "Knox")
    assert row["consent"]["given_at"] != "2020-01-01T00:00:00Z"


async def test_the_same_file_again_imports_nothing_twice(intake: Intake) -> None:
    text = "email\nonce@example.com\ntwice@example.com\n"
    first = await _csv(intake, text)
    same_content = await _csv(intake, text)
    same_key = await _csv(intake, text + "third@example.com\n", headers={"Idempotency-Key": "k1"})
    key_again = await _csv(intake, text + "fourth@example.com\n", headers={"Idempotency-Key": "k1"})

    assert (first.status_code, same_content.status_code) == (202, 200)
    assert same_content.json()["import_id"] == first.json()["import_id"]
    assert (same_key.status_code, key_again.status_code) == (202, 200)
    assert key_again.json()["import_id"] == same_key.json()["import_id"]
    assert await intake.count("leads") == 3
    assert await intake.count("imports") == 2
    assert len(await intake.events("funnel.lead.captured.v2")) == 3


async def test_bad_requests_are_refused_naming_what_is_wrong_and_store_nothing(
    intake: Intake,
) -> None:
    unknown_column = await _csv(intake, "email,shoe\na@example.com,42\n")
    bad_target = await _csv(intake, "email\na@example.com\n", mapping='{"email": "e_mail"}')
    too_many = await _csv(intake, "email\n" + "".join(f"p{i}@example.com\n" for i in range(51)))
    other_type = await intake.client.post(
        "/v1/leads/import", params={"form_id": "shop"}, content=b"email\n",
        headers={**ADMIN, "content-type": "application/xml"},
    )  # fmt: skip
    unknown_form = await _csv(intake, "email\na@example.com\n", form_id="nope")
    json_unknown = await intake.client.post(
        "/v1/leads/import",
        json={"form_id": "shop", "leads": [{"email": "a@example.com", "shoe": "42"}]},
        headers=ADMIN,
    )
    no_key = await intake.client.post(
        "/v1/leads/import", params={"form_id": "shop"}, content=b"email\na@example.com\n",
        headers={"content-type": "text/csv"},
    )  # fmt: skip

    assert unknown_column.status_code == 422
    assert unknown_column.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in unknown_column.json()["errors"]] == ["shoe"]
    assert [e["field"] for e in bad_target.json()["errors"]] == ["mapping.email"]
    assert too_many.status_code == 413
    assert other_type.status_code == 415
    assert unknown_form.status_code == 404
    assert [e["field"] for e in json_unknown.json()["errors"]] == ["leads.0.shoe"]
    assert no_key.status_code == 401
    for table in ("leads", "imports", "import_rows", "outbox"):
        assert await intake.count(table) == 0, table


async def test_a_large_import_answers_at_once_and_is_worked_through_as_it_goes(
    intake: Intake,
) -> None:
    rows = [f"bulk{i}@example.com" for i in range(30)] + ["broken"]
    response = await _csv(intake, "email\n" + "\n".join(rows) + "\n")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["rows"], body["imported"]) == ("queued", 31, 0)
    import_id = body["import_id"]
    assert await intake.count("leads") == 0

    runtime = intake.app.state.runtime
    assert await service.import_batch(runtime) == 4  # one batch (import_batch_size)
    halfway = (await intake.client.get(f"/v1/imports/{import_id}", headers=ADMIN)).json()
    assert (halfway["status"], halfway["imported"]) == ("running", 4)
    while await service.import_batch(runtime):
        pass
    done = (await intake.client.get(f"/v1/imports/{import_id}", headers=ADMIN)).json()
    assert {k: done[k] for k in ("status", "rows", "imported", "failed")} == {
        "status": "done", "rows": 31, "imported": 30, "failed": 1,
    }  # fmt: skip
    assert [(e["row"], e["field"]) for e in done["errors"]] == [(31, "email")]
    assert await intake.count("leads") == 30
    assert await intake.count("import_rows") == 0
    missing = await intake.client.get(
        "/v1/imports/00000000-0000-0000-0000-000000000000", headers=ADMIN
    )
    assert missing.status_code == 404
