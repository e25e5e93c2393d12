"""The import runner's pipeline on the real database: while one batch is written the next is
made ready, and the tables and events come out as when each batch is made ready and written
one after the other. The file puts an email in two consecutive batches (the last row of one,
the first of the next), a phone and an email again in later batches, an email twice in one
batch, and a bad row in every batch; a run stopped inside a batch's transaction, with the
next batch made ready, resumes on a restarted service without a duplicate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2
from funnel_devstack.stack import Stack
from lead_intake.imports import service, store
from lead_intake.imports.worker import ImportRunner
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
BATCH = 5
SETTINGS = {"import_max_rows": 100, "import_inline_rows": 0, "import_batch_size": BATCH}
HEADER = "email,phone,first_name,captured_at,time_zone,consent,utm_source"
ROWS = [
    # batch 1 (rows 1-5)
    "ann@example.com,,Ann,2024-01-02,,yes,fair",
    "bo@example.com,,Bo,2024-01-03,,,",
    "not-an-email,,Bad,,,,",  # 3: email
    ",+1 201 555 0101,Cy,2024-01-04,,,",
    "dup@example.com,,,2024-01-05,,,ads",  # 5: the last row of batch 1
    # batch 2 (rows 6-10)
    "DUP@example.com,,Dee,2024-02-01,,,mail",  # 6: the same email, the first row of batch 2
    "eve@example.com,,Eve,,,,",
    "fay@example.com,,Fay,not a time,,,",  # 8: captured_at
    ",(201) 555-0101,Cy,,,,",  # 9: the phone of row 4
    "gus@example.com,,Gus,,,,",
    # batch 3 (rows 11-15)
    "bo@example.com,,Bo,,,,",  # 11: the email of row 2
    "hal@example.com,,Hal,,Mars/Olympus,,",  # 12: time_zone
    "ivy@example.com,,Ivy,,,,",
    "ivy@example.com,,Ivy,,,,",  # 14: twice in one batch
    "jo@example.com,+12015550102,Jo,,,,",
    # batch 4 (rows 16-20)
    "kim@example.com,,Kim,,,,",
    ",,Nobody,,,,",  # 17: neither email nor phone
    "lea@example.com,,Lea,,,,",
    "max@example.com,,Max,,,,",
    "ned@example.com,,Ned,,,,",  # 20: the last row of batch 4
    # batch 5 (rows 21-23)
    "ned@example.com,,,,Europe/Oslo,,",  # 21: the first row of batch 5
    "oli@example.com,,Oli,,,maybe,",  # 22: consent
    "pia@example.com,,Pia,,,,",
]
CSV = HEADER + "\n" + "\n".join(ROWS) + "\n"
ERRORS = [(3, "email"), (8, "captured_at"), (12, "time_zone"), (17, "email"), (22, "consent")]
IMPORTED = ["+12015550101", "ann@example.com", "bo@example.com", "dup@example.com",
            "eve@example.com", "gus@example.com", "ivy@example.com", "jo@example.com",
            "kim@example.com", "lea@example.com", "max@example.com", "ned@example.com",
            "pia@example.com"]  # fmt: skip
# skip: rows 6, 9, 11, 14 and 21 are known people; update: rows 6 (Dee) and 21 (a time zone)
# fill an empty field, rows 9, 11 and 14 have nothing to fill.
COUNTS = {
    "skip": {"rows": 23, "imported": 13, "existing": 5, "updated": 0, "failed": 5},
    "update": {"rows": 23, "imported": 13, "existing": 3, "updated": 2, "failed": 5},
}


@pytest.fixture
async def two(infra: Stack) -> AsyncIterator[tuple[Intake, Intake]]:
    """Two intakes, each on a database of its own."""
    first = await infra.postgres.create_database("t")
    second = await infra.postgres.create_database("t")
    async with (
        running_intake(first, infra.kafka_bootstrap, **SETTINGS) as a,
        running_intake(second, infra.kafka_bootstrap, **SETTINGS) as b,
    ):
        for intake in (a, b):
            await intake.create_form("shop", default_phone_region="US")
        yield a, b


async def _post(intake: Intake, on_existing: str) -> str:
    response = await intake.client.post(
        "/v1/leads/import",
        params={"form_id": "shop", "on_existing": on_existing},
        content=CSV.encode(),
        headers={**ADMIN, "content-type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["rows"]) == ("queued", 23)
    return str(response.json()["import_id"])


async def _state(intake: Intake, import_id: str) -> dict[str, Any]:
    response = await intake.client.get(f"/v1/imports/{import_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _timeless(value: Any, at: datetime) -> Any:
    """`value` with the import's own time (a row's default capture time) named, not given,
    and so the times it was worked through (a known person's fill-in)."""
    if isinstance(value, datetime) and value == at:
        return "the import's time"
    if isinstance(value, datetime) and value > at:
        return "while importing"
    if isinstance(value, str) and value in (at.isoformat(), at.isoformat()[:-6] + "Z"):
        return "the import's time"
    if isinstance(value, dict):
        return {k: _timeless(v, at) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_timeless(v, at) for v in value)
    return value


async def _snapshot(intake: Intake) -> dict[str, Any]:
    """What the import wrote, with its random ids (leads, submissions, events, keys) replaced
    by the person's email or phone and its own time named: leads, submissions, index
    entries, keys, events."""
    pool = intake.pool
    at = (await pool.fetchval("SELECT created_at FROM imports")).astimezone(UTC)
    person: dict[UUID, str] = {}
    leads = {}
    for row in await pool.fetch("SELECT * FROM leads"):
        data = dict(row)
        name = data["email"] or data["phone"]
        person[data["id"]] = name
        leads[name] = {k: v for k, v in data.items() if k not in ("id", "created_at", "updated_at")}
    submissions = sorted(
        (person[r["lead_id"]], r["form_id"], r["source"], json.dumps(r["utm"], sort_keys=True),
         r["captured_at"], json.dumps(r["custom_fields"], sort_keys=True))
        for r in await pool.fetch("SELECT * FROM submissions")
    )  # fmt: skip
    terms: dict[str, list[bytes]] = {}
    for r in await pool.fetch("SELECT lead_id, digest FROM lead_search_terms ORDER BY digest"):
        terms.setdefault(person[r["lead_id"]], []).append(bytes(r["digest"]))
    keys = sorted(person[r["lead_id"]] for r in await pool.fetch("SELECT * FROM subject_keys"))
    events = []
    for event in await intake.events():
        assert isinstance(event, LeadCapturedV2 | LeadUpdatedV2), event
        sealed = await intake.person(event)
        data = event.model_dump(exclude={"lead_id", "submission_id", "personal_data", "updated_at"})
        events.append((event.event_type, person[event.lead_id], data, sealed.model_dump()))
    return _timeless(
        {
            "leads": leads,
            "submissions": submissions,
            "terms": terms,
            "keys": keys,
            "events": sorted(events, key=lambda e: (e[1], e[0])),
            "staged rows left": await intake.count("import_rows"),
        },
        at,
    )


def _counted(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("rows", "imported", "existing", "updated", "failed")}


@pytest.mark.parametrize("on_existing", ["skip", "update"])
async def test_the_pipelined_import_writes_what_one_batch_at_a_time_writes(
    two: tuple[Intake, Intake], on_existing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelined, one_by_one = two
    seen: list[str] = []
    prepare, record_batch = service._prepare, store.record_batch

    async def preparing(runtime: Any, job: Any, first: int, reader: Any) -> Any:
        seen.append(f"ready {first}")
        return await prepare(runtime, job, first, reader)

    async def recording(conn: Any, import_id: Any, next_row: int, *args: Any) -> None:
        seen.append(f"written to {next_row - 1}")
        await record_batch(conn, import_id, next_row, *args)

    monkeypatch.setattr(service, "_prepare", preparing)
    monkeypatch.setattr(store, "record_batch", recording)

    first = await _post(pipelined, on_existing)
    assert await service.run_import(pipelined.app.state.runtime) == 23  # the whole import
    pipelined_order = list(seen)
    seen.clear()
    second = await _post(one_by_one, on_existing)
    runtime = one_by_one.app.state.runtime
    while await service.import_batch(runtime):  # each batch made ready, then written
        pass

    # Each batch was made ready while the one before was being written; one at a time, not.
    assert pipelined_order == [
        "ready 1", "ready 6", "written to 5", "ready 11", "written to 10", "ready 16",
        "written to 15", "ready 21", "written to 20", "written to 23",
    ]  # fmt: skip
    assert seen == [
        "ready 1", "written to 5", "ready 6", "written to 10", "ready 11", "written to 15",
        "ready 16", "written to 20", "ready 21", "written to 23",
    ]  # fmt: skip
    done = await _state(pipelined, first)
    assert done["status"] == "done"
    assert _counted(done) == COUNTS[on_existing]
    assert [(e["row"], e["field"]) for e in done["errors"]] == ERRORS
    assert _counted(await _state(one_by_one, second)) == COUNTS[on_existing]
    assert (await _state(one_by_one, second))["errors"] == done["errors"]

    got = await _snapshot(pipelined)
    assert sorted(got["leads"]) == IMPORTED
    assert got["keys"] == IMPORTED
    assert got["staged rows left"] == 0
    captured = [e for e in got["events"] if e[0] == LeadCapturedV2.event_type]
    assert sorted(e[1] for e in captured) == IMPORTED  # one capture per person
    dup = got["leads"]["dup@example.com"]
    ned = got["leads"]["ned@example.com"]
    updated = sorted(e[1] for e in got["events"] if e[0] == LeadUpdatedV2.event_type)
    if on_existing == "skip":
        assert (dup["first_name"], ned["time_zone"], updated) == (None, None, [])
    else:
        assert (dup["first_name"], ned["time_zone"]) == ("Dee", "Europe/Oslo")
        assert updated == ["dup@example.com", "ned@example.com"]
    # Row 5's capture is the first touch and the capture time; row 6 never another capture.
    assert dup["first_touch"]["utm"] == {"source": "ads"}
    assert dup["captured_at"].isoformat() == "2024-01-05T00:00:00+00:00"
    assert got == await _snapshot(one_by_one)


async def test_a_run_stopped_inside_a_batch_resumes_on_a_restart_without_duplicates(
    fresh_dsn: str, infra: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_batch = store.record_batch
    stop_at: list[Callable[[], Awaitable[None]]] = []

    async def recording(conn: Any, import_id: Any, next_row: int, *args: Any) -> None:
        await record_batch(conn, import_id, next_row, *args)
        if next_row == 16 and stop_at:
            await stop_at.pop()()  # batch 3's statements ran; its commit has not

    monkeypatch.setattr(store, "record_batch", recording)
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **SETTINGS) as intake:
        await intake.create_form("shop", default_phone_region="US")
        import_id = await _post(intake, "skip")
        run = asyncio.ensure_future(service.run_import(intake.app.state.runtime))

        async def crash() -> None:
            run.cancel()  # the service stopped hard: the transaction never commits
            await asyncio.sleep(3600)

        stop_at.append(crash)
        with pytest.raises(asyncio.CancelledError):
            await run
        halfway = await _state(intake, import_id)
        # Batches 1 and 2 are in; batch 3 (and batch 4, made ready meanwhile) are not.
        assert (halfway["status"], _counted(halfway)) == (
            "running", {"rows": 23, "imported": 6, "existing": 2, "updated": 0, "failed": 2},
        )  # fmt: skip
        assert await intake.count("leads") == await intake.count("outbox") == 6
        assert await intake.count("import_rows") == 13
        assert await intake.count("import_errors") == 2

    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **SETTINGS) as restarted:
        assert await service.run_import(restarted.app.state.runtime) == 13
        assert await service.run_import(restarted.app.state.runtime) == 0  # nothing waits
        done = await _state(restarted, import_id)
        assert done["status"] == "done"
        assert _counted(done) == COUNTS["skip"]
        assert [(e["row"], e["field"]) for e in done["errors"]] == ERRORS
        got = await _snapshot(restarted)
        assert sorted(got["leads"]) == got["keys"] == IMPORTED
        assert sorted(e[1] for e in got["events"]) == IMPORTED  # one event per person
        assert len(got["submissions"]) == len(IMPORTED)
        assert got["staged rows left"] == 0


async def test_a_file_refused_past_its_first_staged_chunks_leaves_nothing(
    fresh_dsn: str, infra: Stack
) -> None:
    """The request stages a chunk while it reads the next: a file found too long, or broken,
    after the first chunks went out is refused whole (413, 422) and nothing of it stays."""
    limit = 2 * service.STAGE_CHUNK + 100
    people = "".join(f"p{n}@example.com\n" for n in range(limit))
    async with running_intake(
        fresh_dsn, infra.kafka_bootstrap, **{**SETTINGS, "import_max_rows": limit}
    ) as intake:
        await intake.create_form("shop")

        async def post(text: str) -> Any:
            return await intake.client.post(
                "/v1/leads/import",
                params={"form_id": "shop"},
                content=text.encode(),
                headers={**ADMIN, "content-type": "text/csv"},
            )

        too_many = await post("email\n" + people + "one-more@example.com\n")
        broken = await post("email\n" + people[: -len(f"p{limit - 1}@example.com\n")] + '"p@x\n')
        fine = await post("email\n" + people)

        assert too_many.status_code == 413, too_many.text
        assert broken.status_code == 422, broken.text
        assert [e["field"] for e in broken.json()["errors"]] == ["body"]
        assert fine.status_code == 202, fine.text
        assert await intake.count("imports") == 1
        assert await intake.count("import_rows") == limit  # the accepted file's, queued
        assert await intake.count("leads") == 0


async def test_the_import_runner_stops_after_the_batch_being_written_and_a_new_one_finishes(
    fresh_dsn: str, infra: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's own loop: one step is the whole import; a stop asked while batch 2 is
    written ends it after that batch (batch 3, made ready meanwhile, is dropped), and the
    runner of the next start imports the rest."""
    record_batch = store.record_batch
    runners: list[ImportRunner] = []

    async def recording(conn: Any, import_id: Any, next_row: int, *args: Any) -> None:
        await record_batch(conn, import_id, next_row, *args)
        if next_row == 11:
            runners[0].stop()  # the pod is asked to stop while batch 2 is written

    monkeypatch.setattr(store, "record_batch", recording)
    async with running_intake(fresh_dsn, infra.kafka_bootstrap, **SETTINGS) as intake:
        await intake.create_form("shop", default_phone_region="US")
        import_id = await _post(intake, "skip")
        runners.append(ImportRunner(intake.app.state.runtime))
        await asyncio.wait_for(runners[0].run(), timeout=120)

        stopped = await _state(intake, import_id)
        assert (stopped["status"], _counted(stopped)) == (
            "running", {"rows": 23, "imported": 6, "existing": 2, "updated": 0, "failed": 2},
        )  # fmt: skip
        assert await intake.count("leads") == 6

        runners.append(ImportRunner(intake.app.state.runtime))
        again = asyncio.ensure_future(runners[1].run())
        for _ in range(600):
            if (await _state(intake, import_id))["status"] == "done":
                break
            await asyncio.sleep(0.1)
        runners[1].stop()
        await asyncio.wait_for(again, timeout=60)
        done = await _state(intake, import_id)
        assert (done["status"], _counted(done)) == ("done", COUNTS["skip"])
        assert sorted((await _snapshot(intake))["leads"]) == IMPORTED
