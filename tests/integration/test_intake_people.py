"""The people workspace on the real PostgreSQL: a person read whole (contact details only with
pii:read), people found through the keyed search index, a person corrected, offline touches."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from funnel_contracts import ActivityRecorded, LeadUpdatedV2
from funnel_devstack.stack import Stack
from funnel_servicekit.auth import hash_key
from funnel_servicekit.db import connect
from lead_intake.common.blind_index import BlindIndex
from lead_intake.people.service import index_everyone
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
SEARCH_KEY = "intake-test-search-index-key-0123456789abcdef"
ANA_KEY = "intake-test-ana-key-0123456789abcdefghij"  # may read contact details
BEN_KEY = "intake-test-ben-key-0123456789abcdefghij"  # may not
ANA = {"Authorization": f"Bearer {ANA_KEY}"}
BEN = {"Authorization": f"Bearer {BEN_KEY}"}
CONTACT = {"email", "phone", "first_name", "last_name", "custom_fields"}


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    keys = [
        {
            "name": "ana",
            "sha256": hash_key(ANA_KEY),
            "scopes": ["leads:read", "leads:write", "pii:read"],
        },
        {"name": "ben", "sha256": hash_key(BEN_KEY), "scopes": ["leads:read", "leads:write"]},
    ]
    async with running_intake(
        fresh_dsn,
        infra.kafka_bootstrap,
        api_keys=json.loads(json.dumps(keys)),
        search_index_key=SEARCH_KEY,
    ) as running:
        await running.create_form(
            "shop",
            default_phone_region="SE",
            fields=[{"name": "email", "required": False}],
            allow_unknown_fields=True,
            consent_text="Send me offers",
            consent_categories=["marketing"],
        )
        yield running


async def _submit(intake: Intake, **fields: str) -> str:
    response = await intake.client.post("/v1/forms/shop/submissions", json=fields)
    assert response.status_code == 202, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def _find(intake: Intake, headers: dict[str, str] = ANA, **params: Any) -> httpx.Response:
    return await intake.client.get("/v1/leads", params=params, headers=headers)


async def _ids(intake: Intake, **params: Any) -> list[str]:
    response = await _find(intake, **params)
    assert response.status_code == 200, response.text
    return [item["lead_id"] for item in response.json()["items"]]


def _field(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    field: str = response.json()["errors"][0]["field"]
    return field


async def test_a_person_whole_and_their_contact_details_only_with_pii_read(intake: Intake) -> None:
    lead_id = await _submit(
        intake,
        email="Kay.Lind@Example.com",
        first_name="Kay",
        last_name="Lind",
        phone="070 111 22 33",
        consent="on",
        utm_source="google",
        utm_campaign="spring",
        landing_page="https://shop.example.com/a",
        budget="10k",
        company="Acme",
    )
    await _submit(
        intake, email="kay.lind@example.com", utm_source="newsletter", budget="20k", need="crm"
    )

    ana = await intake.client.get(f"/v1/leads/{lead_id}", headers=ANA)
    ben = await intake.client.get(f"/v1/leads/{lead_id}", headers=BEN)
    anonymous = await intake.client.get(f"/v1/leads/{lead_id}")
    unknown = await intake.client.get(f"/v1/leads/{uuid4()}", headers=ANA)
    malformed = await intake.client.get("/v1/leads/nope", headers=ANA)

    assert ana.status_code == 200, ana.text
    person = ana.json()
    print("person:", json.dumps(person, sort_keys=True))
    assert person["lead_id"] == lead_id
    assert (person["email"], person["phone"]) == ("kay.lind@example.com", "+46701112233")
    assert (person["first_name"], person["last_name"]) == ("Kay", "Lind")
    assert person["custom_fields"] == {"company": "Acme"}
    assert person["consent"]["marketing"]["granted"] is True
    assert person["consent"]["marketing"]["source"] == "form:shop"
    assert person["first_touch"]["utm"] == {"source": "google", "campaign": "spring"}
    assert person["first_touch"]["landing_page"] == "https://shop.example.com/a"
    assert person["last_touch"]["utm"] == {"source": "newsletter"}
    assert person["qualification"] == {"budget": "20k", "need": "crm"}  # the latest answers
    assert person["submissions"]["count"] == 2
    [newest, oldest] = person["submissions"]["items"]
    assert newest["submitted_at"] > oldest["submitted_at"]
    assert newest["form_id"] == "shop"
    assert (person["test"], person["merged_into"], person["source"]) == (False, None, "form")
    assert person["created_at"] <= person["updated_at"]

    assert ben.status_code == 200, ben.text
    assert CONTACT.isdisjoint(ben.json())  # left out, not null
    assert {k: v for k, v in person.items() if k not in CONTACT} == ben.json()
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    assert _field(unknown) == "lead_id"
    assert malformed.status_code == 422

    await intake.client.post(
        "/v1/erasure-requests", json={"email": "kay.lind@example.com"}, headers=ADMIN
    )
    gone = await intake.client.get(f"/v1/leads/{lead_id}", headers=ANA)
    assert gone.status_code == 410
    assert gone.json()["type"] == "urn:funnel:problem:erased"


async def test_the_latest_50_submissions_are_shown_with_the_count_of_all(intake: Intake) -> None:
    lead_id = await _submit(intake, email="often@example.com")
    await intake.pool.execute(
        """INSERT INTO submissions (id, lead_id, form_id, captured_at)
           SELECT gen_random_uuid(), $1::uuid, 'shop', now() - make_interval(mins => n)
           FROM generate_series(1, 59) AS n""",
        lead_id,
    )
    person = (await intake.client.get(f"/v1/leads/{lead_id}", headers=BEN)).json()
    items = person["submissions"]["items"]
    assert person["submissions"]["count"] == 60
    assert len(items) == 50
    assert [i["submitted_at"] for i in items] == sorted(
        (i["submitted_at"] for i in items), reverse=True
    )


async def test_finding_people_by_exact_email_phone_and_a_prefix(intake: Intake) -> None:
    asa = await _submit(intake, email="asa.oberg@example.com", first_name="Åsa", last_name="Öberg")
    asa2 = await _submit(intake, email="asa@example.org", first_name="ASA", last_name="Lind")
    oskar = await _submit(
        intake, email="oskar@example.com", first_name="Oskar", phone="070-222 33 44"
    )
    # Someone known by phone alone.
    nils = await _submit(intake, phone="+46 70 333 44 55", first_name="Nils")

    assert await _ids(intake, email="ASA.Oberg@Example.com") == [asa]
    assert await _ids(intake, email="nobody@example.com") == []
    assert await _ids(intake, phone="+46 70 222 33 44") == [oskar]
    assert await _ids(intake, phone="+46703334455") == [nils]
    assert await _ids(intake, q="ober") == [asa]  # accents and case ignored
    assert sorted(await _ids(intake, q="ÅS")) == sorted([asa, asa2])
    assert await _ids(intake, q="asa.ob") == [asa]  # the email's local part
    assert await _ids(intake, q="asa lind") == [asa2]  # each word a prefix
    assert await _ids(intake, q="lind") == [asa2]
    assert await _ids(intake, q="example") == []  # the domain is not searched
    assert await _ids(intake, q="ni") == [nils]

    with_contact = (await _find(intake, email="oskar@example.com")).json()["items"][0]
    without = (await _find(intake, BEN, email="oskar@example.com")).json()["items"][0]
    assert with_contact["first_name"] == "Oskar"
    assert with_contact["phone"] == "+46702223344"
    assert set(without) == {"lead_id", "created_at", "updated_at"}

    refused = {
        "one character": (await _find(intake, q="a"), "q"),
        "none": (await _find(intake), "q"),
        "two at once": (await _find(intake, email="asa@example.org", q="as"), "q"),
        "a bad email": (await _find(intake, email="not-an-email"), "email"),
        "a bad phone": (await _find(intake, phone="12"), "phone"),
        "too many": (await _find(intake, q="as", limit=201), "limit"),
        "none asked": (await _find(intake, q="as", limit=0), "limit"),
        "a bad cursor": (await _find(intake, q="as", after="x"), "after"),
    }
    for what, (response, field) in refused.items():
        assert response.status_code == 422, what
        assert _field(response) == field, what
    assert (await intake.client.get("/v1/leads", params={"q": "as"})).status_code == 401


async def test_people_by_lead_ids_name_a_list_of_leads(intake: Intake) -> None:
    """`?id=` repeated: the people of a page of leads another service listed (the workspace's
    lead list names its rows so), contact details only with pii:read, erased ones left out,
    paged like any search."""
    ada = await _submit(intake, email="ada.ids@example.com", first_name="Ada", last_name="Byron")
    bo = await _submit(intake, email="bo.ids@example.com", first_name="Bo")
    gone = await _submit(intake, email="gone.ids@example.com", first_name="Gone")
    await _submit(intake, email="other.ids@example.com", first_name="Other")  # not asked for
    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "gone.ids@example.com"}, headers=ADMIN
    )
    assert erased.status_code == 202
    unknown = str(uuid4())

    asked = [ada, unknown, bo, gone, ada]  # any order, repeats, strangers
    page = await _find(intake, id=asked)
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert [i["lead_id"] for i in items] == sorted([ada, bo])
    assert page.json()["next_after"] is None
    names = {i["lead_id"]: (i["first_name"], i["last_name"], i["email"]) for i in items}
    assert names == {
        ada: ("Ada", "Byron", "ada.ids@example.com"),
        bo: ("Bo", None, "bo.ids@example.com"),
    }
    # Without pii:read: the same people, no contact details.
    without = (await _find(intake, BEN, id=asked)).json()["items"]
    assert [i["lead_id"] for i in without] == sorted([ada, bo])
    assert all(set(i) == {"lead_id", "created_at", "updated_at"} for i in without)
    # Paged like any search: `limit` and `after` walk the ids in lead id order.
    first = (await _find(intake, id=[ada, bo], limit=1)).json()
    assert [i["lead_id"] for i in first["items"]] == [min(ada, bo)]
    assert first["next_after"] == min(ada, bo)
    second = (await _find(intake, id=[ada, bo], limit=1, after=first["next_after"])).json()
    assert [i["lead_id"] for i in second["items"]] == [max(ada, bo)]
    assert second["next_after"] is None

    refused = {
        "with q": (await _find(intake, id=[ada], q="ad"), "q"),
        "with an email": (await _find(intake, id=[ada], email="ada.ids@example.com"), "email"),
        "not a lead id": (await _find(intake, id=["nope"]), "id.0"),
        "over 200": (await _find(intake, id=[str(uuid4()) for _ in range(201)]), "id"),
    }
    for what, (response, field) in refused.items():
        assert response.status_code == 422, what
        assert _field(response) == field, what
    assert (await intake.client.get("/v1/leads", params={"id": ada})).status_code == 401


async def test_pages_cover_every_match_once(intake: Intake) -> None:
    body = {
        "form_id": "shop",
        "leads": [
            {
                "email": f"p{i}@example.com",
                "first_name": f"Pat{i}",
                "last_name": "Pagesson",
                "captured_at": "2026-01-01T00:00:00Z",
            }
            for i in range(7)
        ],
    }
    imported = await intake.client.post("/v1/leads/import", json=body, headers=ADMIN)
    assert imported.status_code == 202, imported.text
    expected = set(imported.json()["lead_ids"])
    await _submit(intake, email="other@example.com", last_name="Pagel")

    seen: list[str] = []
    sizes: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"q": "pages", "limit": 3}
        if after:
            params["after"] = after
        page = (await _find(intake, **params)).json()
        seen += [i["lead_id"] for i in page["items"]]
        sizes.append(len(page["items"]))
        after = page["next_after"]
        if after is None:
            break
    print("page sizes:", sizes)
    assert sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == expected
    assert len(await _ids(intake, q="page", limit=200)) == 8


async def test_an_erased_person_is_found_no_more(intake: Intake) -> None:
    gone = await _submit(
        intake, email="gone@example.com", first_name="Gunnar", phone="+46704445566"
    )
    kept = await _submit(intake, email="kept@example.com", first_name="Gunilla")
    assert sorted(await _ids(intake, q="gun")) == sorted([gone, kept])

    erased = await intake.client.post(
        "/v1/erasure-requests", json={"email": "gone@example.com"}, headers=ADMIN
    )

    assert erased.status_code == 202
    assert await _ids(intake, q="gun") == [kept]
    assert await _ids(intake, email="gone@example.com") == []
    assert await _ids(intake, phone="+46704445566") == []
    count = "SELECT count(*) FROM lead_search_terms WHERE lead_id = $1::uuid"
    assert await intake.val(count, gone) == 0
    assert await intake.val(count, kept) > 0


async def test_a_correction_emits_the_sealed_update_and_moves_the_index(intake: Intake) -> None:
    lead_id = await _submit(
        intake, email="maja@example.com", first_name="Maja", last_name="Berg", consent="on"
    )
    await _submit(intake, email="taken@example.com", phone="+46705556677")
    before = len(await intake.events())

    answer = await intake.client.patch(
        f"/v1/leads/{lead_id}",
        json={
            "last_name": "Ström",
            "phone": "+46 70 111 00 00",
            "time_zone": "Europe/Stockholm",
            "consent": {"withdrawn": ["marketing"], "granted": ["news"]},
        },
        headers=ANA,
    )

    assert answer.status_code == 200, answer.text
    person = answer.json()
    assert (person["last_name"], person["phone"]) == ("Ström", "+46701110000")
    assert person["time_zone"] == "Europe/Stockholm"
    assert person["consent"]["marketing"]["granted"] is False
    assert person["consent"]["marketing"]["source"] == "manual:ana"
    assert person["consent"]["news"]["granted"] is True
    events = await intake.events()
    [update] = events[before:]
    assert isinstance(update, LeadUpdatedV2)
    assert (update.source, str(update.lead_id)) == ("manual", lead_id)
    opened = await intake.person(update)
    assert (opened.email, opened.last_name, opened.phone) == (
        "maja@example.com",
        "Ström",
        "+46701110000",
    )
    assert update.consent is not None
    assert update.consent.categories == ("news",)
    assert await _ids(intake, q="strom") == [lead_id]
    assert await _ids(intake, q="berg") == []
    assert await _ids(intake, phone="+46701110000") == [lead_id]

    # Without pii:read the answer leaves the details out.
    by_ben = await intake.client.patch(
        f"/v1/leads/{lead_id}", json={"locale": "sv-SE"}, headers=BEN
    )
    assert by_ben.status_code == 200
    assert CONTACT.isdisjoint(by_ben.json())
    assert by_ben.json()["locale"] == "sv-SE"
    before = len(await intake.events())
    updated_at = await intake.val("SELECT updated_at FROM leads WHERE id = $1::uuid", lead_id)

    refused = {
        "another's email": (409, {"email": "Taken@example.com"}, "email"),
        "another's phone": (409, {"phone": "+46 70 555 66 77"}, "phone"),
        "a bad email": (422, {"email": "nope"}, "email"),
        "a bad phone": (422, {"phone": "0701"}, "phone"),
        "a bad time zone": (422, {"time_zone": "Mars/Base"}, "time_zone"),
        "an unknown field": (422, {"owner": "ana"}, "owner"),
    }
    for what, (status, body, field) in refused.items():
        response = await intake.client.patch(f"/v1/leads/{lead_id}", json=body, headers=ANA)
        assert response.status_code == status, (what, response.text)
        assert _field(response) == field, what
    unknown = await intake.client.patch(f"/v1/leads/{uuid4()}", json={"locale": "sv"}, headers=ANA)
    reader_only = await intake.client.patch(f"/v1/leads/{lead_id}", json={"locale": "sv"})
    assert unknown.status_code == 404
    assert reader_only.status_code == 401
    # A refused correction wrote nothing.
    assert len(await intake.events()) == before
    assert (
        await intake.val("SELECT updated_at FROM leads WHERE id = $1::uuid", lead_id) == updated_at
    )

    await intake.client.post(
        "/v1/erasure-requests", json={"email": "maja@example.com"}, headers=ADMIN
    )
    erased = await intake.client.patch(f"/v1/leads/{lead_id}", json={"locale": "sv"}, headers=ANA)
    assert erased.status_code == 410


async def test_the_index_people_command_indexes_everyone_again(
    intake: Intake, fresh_dsn: str
) -> None:
    first = await _submit(intake, email="idx1@example.com", first_name="Ingrid")
    second = await _submit(intake, phone="+46706667788", first_name="Ivar")
    await intake.pool.execute("DELETE FROM lead_search_terms")  # as before the index existed
    assert await _ids(intake, q="in") == []

    conn = await connect(fresh_dsn, "intake")
    try:
        count = await index_everyone(conn, BlindIndex(SEARCH_KEY.encode()), batch=1)
    finally:
        await conn.close()

    assert count == 2
    assert await _ids(intake, q="in") == [first]
    assert await _ids(intake, q="iv") == [second]
    assert await _ids(intake, email="idx1@example.com") == [first]


async def test_offline_touches_name_the_key_that_logged_them(intake: Intake) -> None:
    lead_id = await _submit(intake, email="called@example.com")
    form = (await intake.client.get("/v1/forms/shop", headers=ADMIN)).json()
    call = {
        "type": "call_logged",
        "occurred_at": "2026-03-01T10:00:00Z",
        "lead_id": lead_id,
        "actor": "mallory",  # ignored
        "properties": {"outcome": "reached", "text": "wants a demo"},
    }
    note = {**call, "type": "note_added", "properties": {"text": "budget in Q4"}}
    del note["actor"]
    view = {**note, "type": "page_view", "properties": {}}
    before = len(await intake.events())

    logged = await intake.client.post(
        "/v1/activities", json={"activities": [call, note, view]}, headers=BEN
    )

    assert logged.status_code == 202, logged.text
    recorded = [e for e in (await intake.events())[before:] if isinstance(e, ActivityRecorded)]
    assert [(e.activity_type, e.actor) for e in recorded] == [
        ("call_logged", "ben"),
        ("note_added", "ben"),
        ("page_view", None),
    ]
    # A note's words travel sealed with the person's key; in the clear only that it has some.
    assert recorded[0].properties == {"outcome": "reached", "text": "*"}
    assert recorded[0].personal_data is not None
    assert "wants a demo" not in recorded[0].model_dump_json()

    stored = await intake.count("activities")
    public = await intake.client.post(
        "/v1/activities",
        json={"activities": [{**call, "lead_id": None, "visitor_id": "visitor-0001"}]},
        headers={"X-Funnel-Key": form["public_key"]},
    )
    too_long = await intake.client.post(
        "/v1/activities",
        json={"activities": [{**call, "properties": {"outcome": "x" * 101}}]},
        headers=ANA,
    )
    not_text = await intake.client.post(
        "/v1/activities",
        json={"activities": [{**note, "properties": {"text": 5}}]},
        headers=ANA,
    )
    assert public.status_code == 422
    assert _field(public) == "activities.0.type"
    assert too_long.status_code == 422
    assert _field(too_long) == "activities.0.properties.outcome"
    assert not_text.status_code == 422
    assert _field(not_text) == "activities.0.properties.text"
    assert await intake.count("activities") == stored
