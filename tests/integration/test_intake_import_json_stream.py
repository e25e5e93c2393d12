"""A large JSON import on the real database and Kafka: the body streamed (spooled to a file
past 1 MiB, parsed a lead at a time), its options anywhere in the object, bad rows named by
number and field while the good ones go in, every person captured once with a sealed event
and found by the search index, and the same body again importing nothing."""

from __future__ import annotations

import hashlib
import json
import tempfile
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from funnel_contracts import LeadCapturedV2
from funnel_devstack.stack import Stack
from lead_intake.common.body import SPOOL_IN_MEMORY
from lead_intake.imports import service
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
LEADS = 6_000
BAD = {17: "email", 2_500: "phone", 5_999: "first_name"}


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, import_max_rows=40_000, import_inline_rows=0,
        import_batch_size=500,
    ) as running:  # fmt: skip
        await running.create_form("shop", default_phone_region="SE")
        yield running


def _lead(n: int) -> dict[str, object]:
    lead: dict[str, object] = {
        "email": f"Streamed.Person{n}@Example.com",
        "first_name": f"Stina{n % 50}",
        "last_name": "Lindqvist-Åberg",
        "phone": f"070-{n:07d}",
        "captured_at": "2025-03-05T12:00:00Z",
        "utm": {"source": "fair", "campaign": f"spring-{n % 3}"},
        "custom_fields": {"plan": "pro", "seats": n % 9},
    }
    row = n + 1
    if BAD.get(row) == "email":
        lead["email"] = "not-an-email"
    elif BAD.get(row) == "phone":
        lead["phone"] = "12"
    elif BAD.get(row) == "first_name":
        lead["first_name"] = "Nul\u0000here"
    return lead


async def test_a_large_json_body_is_streamed_and_imported_with_its_bad_rows_named(
    intake: Intake,
) -> None:
    leads = [_lead(n) for n in range(LEADS)]
    # The options after the leads: only a reader of the whole document finds them.
    body = json.dumps({"leads": leads, "on_existing": "skip", "form_id": "shop"}).encode()
    assert len(body) > SPOOL_IN_MEMORY  # spooled to a temporary file, not kept in memory

    response = await intake.client.post(
        "/v1/leads/import",
        content=body,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert (started["status"], started["rows"], started["form_id"]) == ("queued", LEADS, "shop")
    assert await intake.count("import_rows") == LEADS

    runtime = intake.app.state.runtime
    while await service.import_batch(runtime):
        pass
    done = (await intake.client.get(f"/v1/imports/{started['import_id']}", headers=ADMIN)).json()
    assert {k: done[k] for k in ("status", "rows", "imported", "existing", "failed")} == {
        "status": "done", "rows": LEADS, "imported": LEADS - 3, "existing": 0, "failed": 3,
    }  # fmt: skip
    assert [(e["row"], e["field"]) for e in done["errors"]] == [
        (17, "email"), (2_500, "phone"), (5_999, "row"),
    ]  # fmt: skip
    assert "first_name" in done["errors"][2]["message"]
    assert await intake.count("leads") == LEADS - 3
    assert await intake.count("import_rows") == 0

    events = await intake.events("funnel.lead.captured.v2")
    assert len(events) == LEADS - 3
    assert len({e.lead_id for e in events}) == LEADS - 3
    first = events[0]
    assert isinstance(first, LeadCapturedV2)
    person = await intake.person(first)
    assert (person.email, person.phone) == ("streamed.person0@example.com", "+46700000000")
    assert (first.utm.source, first.utm.campaign, first.source) == ("fair", "spring-0", "import")
    # Each event has its own id (a batch's share one producer span: the kit's unit test).
    rows = await intake.pool.fetch("SELECT headers FROM outbox ORDER BY id")
    assert len({dict(r["headers"])["ce_id"] for r in rows}) == LEADS - 3
    # The same search entries as a form post makes: found by a prefix of a name.
    found = await intake.client.get(
        "/v1/leads", params={"q": "stina49 aberg", "limit": 200}, headers=ADMIN
    )
    assert found.status_code == 200, found.text
    named = [n for n in range(LEADS) if n % 50 == 49 and n + 1 not in BAD]
    assert len(found.json()["items"]) == len(named) == LEADS // 50 - 1

    again = await intake.client.post(
        "/v1/leads/import",
        content=body,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert (again.status_code, again.json()["import_id"]) == (200, started["import_id"])
    assert await intake.count("leads") == LEADS - 3


async def test_a_json_body_that_is_refused_stores_nothing(intake: Intake) -> None:
    json_ct = {**ADMIN, "content-type": "application/json"}
    truncated = json.dumps({"form_id": "shop", "leads": [_lead(n) for n in range(3000)]})
    cut = await intake.client.post(
        "/v1/leads/import", content=truncated[:-40].encode(), headers=json_ct
    )
    late_unknown = json.dumps(
        {"form_id": "shop", "leads": [_lead(n) for n in range(3000)] + [{"shoe": "42"}]}
    )
    unknown = await intake.client.post(
        "/v1/leads/import", content=late_unknown.encode(), headers=json_ct
    )
    no_form = await intake.client.post(
        "/v1/leads/import", content=json.dumps({"leads": [_lead(1)]}).encode(), headers=json_ct
    )
    query_form = await intake.client.post(
        "/v1/leads/import",
        params={"form_id": "nope"},
        content=json.dumps({"leads": [_lead(1)]}).encode(),
        headers=json_ct,
    )

    assert cut.status_code == 400
    assert cut.headers["content-type"] == "application/problem+json"
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["leads.3000.shoe"]
    assert [e["field"] for e in no_form.json()["errors"]] == ["form_id"]
    assert query_form.status_code == 404
    for table in ("leads", "imports", "import_rows", "outbox"):
        assert await intake.count(table) == 0, table


async def test_staging_a_json_import_takes_memory_that_does_not_grow_with_it(
    intake: Intake,
) -> None:
    """The request's part (the body checked, every lead staged in one transaction), on the real
    database: its peak memory is the same for 4x the leads, a fraction of json.loads's."""
    runtime = intake.app.state.runtime
    peaks, sizes = [], []
    for leads in (10_000, 40_000):
        body = json.dumps({"form_id": "shop", "leads": [_lead(n) for n in range(leads)]})
        raw = body.encode()
        with tempfile.TemporaryFile() as spool:
            spool.write(raw)
            spool.seek(0)
            tracemalloc.start()
            try:
                started = await service.import_json(
                    runtime, spool, hashlib.sha256(raw).digest(), form_id=None,
                    on_existing=None, mapping={}, idempotency_key=None, created_by="test",
                )  # fmt: skip
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        sizes.append(len(raw))
        assert (started.state.rows, started.state.status) == (leads, "queued")
    assert await intake.count("import_rows") == 50_000
    tracemalloc.start()
    try:
        json.loads(raw)  # what reading the body whole took before
        whole = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The same peak for 4x the leads (a staging chunk of rows, the parser's buffer), and a
    # fraction of what the whole body's leads take at once.
    assert peaks[1] < 1.5 * peaks[0], (peaks, sizes)
    assert peaks[1] < whole / 4, (peaks, whole)
