"""Each person's data key on the real database: the key API, and erasure shredding the key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2
from funnel_contracts.sealed import SealError, key_from_text, unseal
from funnel_devstack.stack import Stack
from funnel_servicekit.auth import hash_key
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
DECRYPTER = "intake-test-decrypter-key-0123456789abcdef"
WRITER = "intake-test-writer-key-0123456789abcdefgh"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    keys = [
        {"name": "notifier", "sha256": hash_key(DECRYPTER), "scopes": ["pii:decrypt"]},
        {"name": "crm", "sha256": hash_key(WRITER), "scopes": ["leads:read", "leads:write"]},
    ]
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, api_keys=json.loads(json.dumps(keys))
    ) as running:
        await running.create_form("shop", default_phone_region="SE")
        yield running


async def _submit(intake: Intake, **fields: str) -> str:
    response = await intake.client.post("/v1/forms/shop/submissions", json=fields)
    assert response.status_code == 202, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_the_key_api_needs_pii_decrypt_and_its_key_opens_the_lead_s_events(
    intake: Intake,
) -> None:
    lead_id = await _submit(intake, email="kay@example.com", first_name="Kay")
    await _submit(intake, email="kay@example.com", phone="070 111 22 33")
    path = f"/v1/leads/{lead_id}/data-key"

    anonymous = await intake.client.get(path)
    writer = await intake.client.get(path, headers=_bearer(WRITER))
    unknown = await intake.client.get(f"/v1/leads/{uuid4()}/data-key", headers=_bearer(DECRYPTER))
    malformed = await intake.client.get("/v1/leads/nope/data-key", headers=_bearer(DECRYPTER))
    answer = await intake.client.get(path, headers=_bearer(DECRYPTER))

    assert anonymous.status_code == 401
    assert writer.status_code == 403  # leads:write is not enough to read people's keys
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert malformed.status_code == 422
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    key = key_from_text(answer.json()["key"])
    captured, updated = await intake.events()
    assert isinstance(captured, LeadCapturedV2)
    assert isinstance(updated, LeadUpdatedV2)
    opened = unseal(
        captured.personal_data, key=key, lead_id=captured.lead_id, event_type=captured.event_type
    )
    latest = unseal(
        updated.personal_data, key=key, lead_id=updated.lead_id, event_type=updated.event_type
    )
    assert (opened.email, opened.first_name, opened.phone) == ("kay@example.com", "Kay", None)
    assert (latest.email, latest.phone) == ("kay@example.com", "+46701112233")
    assert await intake.count("subject_keys") == 1  # one key per person, reused


async def test_each_person_has_their_own_key(intake: Intake) -> None:
    first = await _submit(intake, email="one@example.com")
    second = await _submit(intake, email="two@example.com")
    keys = {
        lead: (await intake.client.get(f"/v1/leads/{lead}/data-key", headers=ADMIN)).json()["key"]
        for lead in (first, second)
    }
    assert len(set(keys.values())) == 2
    _, two = await intake.events()
    assert isinstance(two, LeadCapturedV2)
    with pytest.raises(SealError):  # the other person's key does not open it
        unseal(
            two.personal_data,
            key=key_from_text(keys[first]),
            lead_id=two.lead_id,
            event_type=two.event_type,
        )


async def test_erasure_destroys_the_key_with_the_data_in_one_transaction(intake: Intake) -> None:
    forget = await _submit(intake, email="forget.me@example.com", phone="070 555 66 77")
    keep = await _submit(intake, email="keep.me@example.com")
    [sealed_before] = [e for e in await intake.events() if str(e.lead_id) == forget]
    assert isinstance(sealed_before, LeadCapturedV2)

    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "forget.me@example.com"}, headers=_bearer(WRITER)
    )

    assert erased.status_code == 202, erased.text
    assert (
        await intake.val("SELECT count(*) FROM subject_keys WHERE lead_id = $1::uuid", forget) == 0
    )
    assert await intake.val("SELECT count(*) FROM subject_keys WHERE lead_id = $1::uuid", keep) == 1
    gone = await intake.client.get(f"/v1/leads/{forget}/data-key", headers=_bearer(DECRYPTER))
    kept = await intake.client.get(f"/v1/leads/{keep}/data-key", headers=_bearer(DECRYPTER))
    assert gone.status_code == 410
    assert gone.json()["type"] == "urn:funnel:problem:erased"
    assert kept.status_code == 200
    # What the topic holds of the erased person is noise now: no stored key opens it.
    stored_keys = await intake.pool.fetch("SELECT data_key FROM subject_keys")
    for row in stored_keys:
        with pytest.raises(SealError):
            unseal(
                sealed_before.personal_data,
                key=row["data_key"],
                lead_id=sealed_before.lead_id,
                event_type=sealed_before.event_type,
            )
    # Nothing of them rests here either: every text column of the schema, and the outbox.
    dump = await intake.pool.fetchval(
        """SELECT string_agg(t::text, ' ') FROM (
               SELECT row_to_json(l)::text AS t FROM leads l
               UNION ALL SELECT row_to_json(s)::text FROM submissions s
               UNION ALL SELECT encode(value, 'escape') FROM outbox) AS every_row"""
    )
    for plain in ("forget.me@example.com", "+46705556677", "705556677"):
        assert plain not in dump
    assert "keep.me@example.com" in dump  # the scan would have seen it


async def test_a_person_captured_again_after_erasure_gets_a_new_key(intake: Intake) -> None:
    old = await _submit(intake, email="again@example.com")
    old_key = await intake.val("SELECT data_key FROM subject_keys WHERE lead_id = $1::uuid", old)
    await intake.client.post(
        "/v1/erasure-requests", json={"email": "again@example.com"}, headers=ADMIN
    )
    new = await _submit(intake, email="again@example.com")
    new_key = await intake.val("SELECT data_key FROM subject_keys WHERE lead_id = $1::uuid", new)
    assert new != old
    assert new_key is not None
    assert new_key != old_key


async def test_a_person_known_by_phone_alone_is_erased_by_phone(intake: Intake) -> None:
    await intake.create_form(
        "callback", default_phone_region="SE", fields=[{"name": "email", "required": False}]
    )
    by_phone = await intake.client.post(
        "/v1/forms/callback/submissions", json={"phone": "070 444 55 66", "first_name": "Pia"}
    )
    assert by_phone.status_code == 202, by_phone.text
    phone_only = by_phone.json()["lead_id"]
    # Another number: the same one would prove them one person and merge them (by itself).
    with_email = await _submit(intake, email="also.pia@example.com", phone="070 444 55 67")
    assert phone_only != with_email

    both = await intake.client.post(
        "/v1/erasure-requests",
        json={"email": "also.pia@example.com", "phone": "+46704445566"},
        headers=ADMIN,
    )
    neither = await intake.client.post("/v1/erasure-requests", json={}, headers=ADMIN)
    national = await intake.client.post(
        "/v1/erasure-requests", json={"phone": "070 444 55 66"}, headers=ADMIN
    )
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"phone": "+46 70 444 55 66"}, headers=ADMIN
    )

    assert (both.status_code, neither.status_code, national.status_code) == (422, 422, 422)
    assert erased.status_code == 202, erased.text
    assert erased.json()["erased_leads"] == [phone_only]  # the lead with an email is its own
    keys = await intake.pool.fetch("SELECT lead_id FROM subject_keys")
    assert [str(r["lead_id"]) for r in keys] == [with_email]
    lead = await intake.pool.fetchrow(
        "SELECT phone, first_name, erased_at FROM leads WHERE id = $1::uuid", phone_only
    )
    assert (lead["phone"], lead["first_name"]) == (None, None)
    assert lead["erased_at"] is not None
    stored = await intake.val("SELECT email_sha256 FROM erasure_requests")
    assert "4445566" not in stored  # only a hash of the number


async def test_a_batch_key_lookup_gives_each_lead_s_key_or_says_erased_or_unknown(
    intake: Intake,
) -> None:
    """`POST /v1/data-keys/lookup`: what `GET .../data-key` answers for each lead, in one call
    (the notifier's contact resolver asks for a whole batch at once)."""
    kept = await _submit(intake, email="batch.kept@example.com", first_name="Kim")
    other = await _submit(intake, email="batch.other@example.com")
    gone = await _submit(intake, email="batch.gone@example.com")
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "batch.gone@example.com"}, headers=ADMIN
    )
    assert erased.status_code == 202, erased.text
    nobody = str(uuid4())
    path = "/v1/data-keys/lookup"
    asked = {"lead_ids": [other, gone, nobody, kept, other]}

    anonymous = await intake.client.post(path, json=asked)
    writer = await intake.client.post(path, json=asked, headers=_bearer(WRITER))
    answer = await intake.client.post(path, json=asked, headers=_bearer(DECRYPTER))

    assert anonymous.status_code == 401
    assert writer.status_code == 403
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert [k["lead_id"] for k in body["keys"]] == [other, kept]  # asked order, each once
    assert (body["erased"], body["unknown"]) == ([gone], [nobody])
    one_by_one = {
        lead: (await intake.client.get(f"/v1/leads/{lead}/data-key", headers=ADMIN)).json()["key"]
        for lead in (other, kept)
    }
    assert {k["lead_id"]: k["key"] for k in body["keys"]} == one_by_one
    [captured] = [e for e in await intake.events() if str(e.lead_id) == kept]
    assert isinstance(captured, LeadCapturedV2)
    key = key_from_text(next(k["key"] for k in body["keys"] if k["lead_id"] == kept))
    opened = unseal(
        captured.personal_data, key=key, lead_id=captured.lead_id, event_type=captured.event_type
    )
    assert (opened.email, opened.first_name) == ("batch.kept@example.com", "Kim")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lead_ids": []}, "lead_ids"),
        ({"lead_ids": ["nope"]}, "lead_ids.0"),
        ({"lead_ids": [str(uuid4()) for _ in range(501)]}, "lead_ids"),
        ({"lead_ids": [str(uuid4())], "extra": 1}, "extra"),
        ({}, "lead_ids"),
    ],
    ids=["empty", "not-a-uuid", "too-many", "unknown-field", "missing"],
)
async def test_a_bad_batch_key_lookup_is_a_problem_naming_the_field(
    intake: Intake, body: dict[str, object], field: str
) -> None:
    answer = await intake.client.post("/v1/data-keys/lookup", json=body, headers=_bearer(DECRYPTER))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in answer.json()["errors"]]
