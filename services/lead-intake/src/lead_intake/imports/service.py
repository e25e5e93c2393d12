"""Imports of existing contacts: staged whole in one transaction when they arrive (a refused
request leaves nothing), then imported in batches, each in its own unit of work, by the
request itself (small ones) or the import runner (the rest), counting as they go.

A row is imported with the capture every way in uses (lead_intake.leads.service): a new person
is captured (funnel.lead.captured.v2, with their original capture time and, if given, the stage
of the funnel they are in); a known one is left as is (`on_existing=skip`) or has their empty
fields filled (`update`). A bad row is recorded with its number and field; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Literal
from uuid import UUID, uuid4

import asyncpg

from funnel_servicekit.db import DATABASE_UNREACHABLE
from funnel_servicekit.problems import Problem, field_problem, invalid, not_found
from funnel_servicekit.unit_of_work import RETRYABLE, UnitOfWork
from lead_intake.activities.service import emails_waited_for
from lead_intake.common.blind_index import BlindIndex
from lead_intake.common.body import malformed
from lead_intake.common.normalize import EmailNormalizer
from lead_intake.forms import service as forms
from lead_intake.forms.models import Form
from lead_intake.imports import store
from lead_intake.imports.models import (
    ON_EXISTING,
    BatchCounts,
    ImportState,
    MalformedCsv,
    MalformedJson,
    OnExisting,
    csv_rows,
    json_head,
    json_rows,
)
from lead_intake.imports.models.mapping import MappingInvalid
from lead_intake.imports.models.rows import FormRules, ImportRow, RowError, parse_row
from lead_intake.leads.service import (
    IMPORT,
    NewPerson,
    ReadyPerson,
    capture,
    fill_known,
    known_by_email,
    prepare_new,
    write_new,
)
from lead_intake.runtime import IntakeRuntime

# Errors that say nothing about a row: the database away, or a transaction to run again.
_NOT_A_ROW = (*DATABASE_UNREACHABLE, *RETRYABLE)
# Rows COPYed into the staging table at a time while a request is read.
STAGE_CHUNK = 2000
Outcome = Literal["imported", "existing", "updated"]


@dataclass(frozen=True)
class Upload:
    """What a request asks: the form, what to do with known people, the column mapping, the
    Idempotency-Key, and who asks."""

    form_id: str
    on_existing: OnExisting
    mapping: dict[str, str]
    idempotency_key: str | None
    created_by: str | None

    def fingerprint(self, body_sha256: bytes) -> bytes:
        """The same content: the same form, options and bytes."""
        options = json.dumps(
            [self.form_id, self.on_existing, sorted(self.mapping.items())], ensure_ascii=True
        ).encode()
        return hashlib.sha256(options + b"\0" + body_sha256).digest()


@dataclass(frozen=True)
class Started:
    """An import as a request leaves it: its state, whether this request made it, and the
    lead of each row when it was imported before the answer (None for a bad row)."""

    state: ImportState
    new: bool
    lead_ids: list[str | None] | None = None


def too_many_rows(limit: int) -> Problem:
    return field_problem(
        413,
        "Too many rows",
        f"an import takes at most {limit} rows; split the file",
        type_="urn:funnel:problem:too-large",
        field="body",
        message=f"more than {limit} rows",
    )


def _refused(exc: MappingInvalid) -> Problem:
    return invalid(exc.field, exc.message, "Invalid import")


async def import_csv(
    runtime: IntakeRuntime, upload: Upload, body: IO[bytes], body_sha256: bytes
) -> Started:
    """A CSV file (a header row, then one row per person), read from `body` as it goes."""
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
    try:
        return await _start(runtime, upload, csv_rows(text, upload.mapping), body_sha256)
    except UnicodeDecodeError:
        raise invalid("body", "not UTF-8 text", "Invalid import") from None
    except MalformedCsv as exc:
        raise invalid("body", f"not a CSV file: {exc}", "Invalid import") from None
    finally:
        text.detach()


async def import_json(
    runtime: IntakeRuntime,
    body: IO[bytes],
    body_sha256: bytes,
    *,
    form_id: str | None,
    on_existing: str | None,
    mapping: dict[str, str],
    idempotency_key: str | None,
    created_by: str | None,
) -> Started:
    """`{"form_id", "leads": [...], "on_existing"}` read from `body` as it goes, never held
    whole: a first pass checks the document and reads its options, a second stages the leads
    one at a time (each lead an object of fields). The body's options win over the query's."""
    try:
        head = json_head(body)
    except MalformedJson as exc:
        raise malformed(str(exc)) from None
    except MappingInvalid as exc:
        raise _refused(exc) from None
    upload = upload_of(
        head.form_id or form_id,
        head.on_existing or on_existing,
        mapping,
        idempotency_key,
        created_by,
    )
    try:
        return await _start(runtime, upload, json_rows(body, head), body_sha256)
    except MalformedJson as exc:
        raise malformed(str(exc)) from None


async def _start(
    runtime: IntakeRuntime,
    upload: Upload,
    rows: Iterator[tuple[int, dict[str, str]]],
    body_sha256: bytes,
) -> Started:
    if upload.on_existing not in ON_EXISTING:
        raise invalid("on_existing", "skip or update", "Invalid import")
    fingerprint = upload.fingerprint(body_sha256)
    async with runtime.pool.acquire() as conn:
        form = await forms.registered_form(conn, upload.form_id)  # 404 for an unknown form
        known = await store.find(conn, upload.idempotency_key, fingerprint)
        if known is not None:
            return Started(await _state(conn, known), new=False)
    import_id = uuid4()
    limit = runtime.settings.import_max_rows
    try:
        async with runtime.transactions() as uow:
            made = await store.create(
                uow.conn,
                import_id,
                form.id,
                upload.on_existing,
                upload.idempotency_key,
                fingerprint,
                upload.created_by,
            )
            if not made:
                raise _Repeated
            count = await _stage(uow, import_id, rows, limit)
            if count == 0:
                raise invalid("body", "no rows to import", "Invalid import")
            await store.set_rows(uow.conn, import_id, count)
    except MappingInvalid as exc:
        raise _refused(exc) from None
    except (_Repeated, asyncpg.UniqueViolationError):
        # The same file, sent again while the first was being read: that import answers.
        async with runtime.pool.acquire() as conn:
            known = await store.find(conn, upload.idempotency_key, fingerprint)
            if known is None:
                raise
            return Started(await _state(conn, known), new=False)
    if count > runtime.settings.import_inline_rows:
        async with runtime.pool.acquire() as conn:
            return Started(await _state(conn, import_id), new=True)
    lead_ids: dict[int, UUID] = {}
    try:
        # One batch at a time (at most 2 here): a request holds one of the pool's connections,
        # not the two of the runner's pipeline.
        while await import_batch(runtime, import_id, lead_ids):
            pass
    except Problem as away:
        if away.status != 503:
            raise
        # stage-tracker is away (the stages of the funnel cannot be checked): the runner
        # imports it once it is back; the answer says where to look.
    async with runtime.pool.acquire() as conn:
        state = await _state(conn, import_id)
    ids = None
    if state.status == "done":
        ids = [str(lead_ids[n]) if n in lead_ids else None for n in range(1, state.rows + 1)]
    return Started(state, new=True, lead_ids=ids)


class _Repeated(Exception):
    """Another request made this import (same key or content) a moment before."""


async def _stage(
    uow: UnitOfWork, import_id: UUID, rows: Iterator[tuple[int, dict[str, str]]], limit: int
) -> int:
    """Every row into `import_rows`, a chunk per statement; PostgreSQL writes one chunk while
    the next is read here (at most one statement in flight on the transaction's connection)."""
    chunk: list[tuple[int, dict[str, str]]] = []
    count = 0
    writing: asyncio.Future[None] | None = None
    try:
        for number, row in rows:
            count = number
            if count > limit:
                raise too_many_rows(limit)
            chunk.append((number, row))
            if len(chunk) >= STAGE_CHUNK:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(store.stage_rows(uow.conn, import_id, chunk))
                await asyncio.sleep(0)  # the chunk goes out; the next one is read meanwhile
                chunk = []
        if writing is not None:
            await writing
        if chunk:
            await store.stage_rows(uow.conn, import_id, chunk)
    finally:
        if writing is not None and not writing.done():
            # A refused file (too many rows, a bad cell): the statement ends before the
            # transaction is undone.
            with contextlib.suppress(Exception):
                await writing
    return count


async def _state(conn: asyncpg.Connection, import_id: UUID) -> ImportState:
    found = await store.state(conn, import_id)
    if found is None:
        raise not_found("import", "import_id", import_id)
    return found


async def state_of(conn: asyncpg.Connection, import_id: UUID) -> ImportState:
    """GET /v1/imports/{import_id}: how far it got, its counts and the errors of bad rows."""
    return await _state(conn, import_id)


# --- importing the staged rows ---------------------------------------------------------------
#
# A pipeline of depth 1 (docs/decisions/0061): while PostgreSQL runs one batch's statements and
# its commit, the next batch is made ready here (its rows read, parsed, checked, normalized,
# its new people's ids, keys, index entries and sealed events made). Making ready reads
# nothing the batch before may be writing: only the staged rows, which no batch changes but
# its own (it deletes them); whether a person is new is looked up inside the transaction
# that writes them, so an email in two consecutive batches is captured once.

# Rows made ready between two looks at the event loop: the statements of the batch before go
# on meanwhile (a slice is about 10 ms of work; slices of 4 or 16 rows cost 5-20 % more CPU
# per row for no throughput measured, bench/README.md).
READY_SLICE = 64


@dataclass(frozen=True)
class _Job:
    """What every batch of one import shares, read once per run, outside any transaction."""

    id: UUID
    on_existing: str
    rows: int
    next_row: int
    created_at: datetime
    form: Form
    rules: FormRules
    size: int
    outbox_source: str


@dataclass
class _Batch:
    """One batch made ready: rows `first` to `next_row - 1` parsed (the bad ones' errors
    kept), the first row of each email with its person made ready, and the rows to import
    one by one (a phone alone, an email given twice in the batch)."""

    first: int
    next_row: int
    counts: BatchCounts
    errors: list[RowError]
    valid: list[ImportRow]
    ready: list[tuple[ImportRow, ReadyPerson]]
    rest: list[ImportRow]


async def _job(runtime: IntakeRuntime, import_id: UUID | None) -> _Job | None:
    async with runtime.pool.acquire() as conn:
        # The runner (no `import_id`) leaves the small imports to their own requests.
        inline = runtime.settings.import_inline_rows if import_id is None else None
        job = await store.claim(conn, import_id, lock=False, inline_rows=inline)
        if job is None:
            return None
        form = await forms.registered_form(conn, job["form_id"])
    # The funnel's stages, from stage-tracker, once per run (a 503 Problem while it is away).
    stages = await forms.funnel_stages(runtime.settings, form.funnel_id)
    rules = FormRules(
        phone_region=form.settings.default_phone_region,
        consent_text=form.settings.consent_text,
        consent_version=form.settings.consent_version,
        consent_categories=form.settings.consent_categories,
        stages=stages,
    )
    return _Job(
        job["id"],
        job["on_existing"],
        job["rows"],
        job["next_row"],
        job["created_at"],
        form,
        rules,
        runtime.settings.import_batch_size,
        runtime.transactions.outbox.source,
    )


async def _give_way() -> None:
    """Let the batch being written go first: each sleep(0) is one turn of the event loop; a
    reply PostgreSQL sent meanwhile is read in one turn and the task waiting for it sends
    its next statement in the next, before the next slice is made ready."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _prepare(
    runtime: IntakeRuntime, job: _Job, first: int, reader: asyncpg.Connection | None
) -> _Batch:
    """The batch that begins at row `first`, made ready (no transaction, nothing written;
    `reader` reads the staged rows, a connection of the run's own, else one of the pool's
    for that read)."""
    if reader is None:
        async with runtime.pool.acquire() as conn:
            rows = await store.rows_from(conn, job.id, first, job.size)
    else:
        rows = await store.rows_from(reader, job.id, first, job.size)
    now = datetime.now(UTC)
    # The batch's people share most words and prefixes: their index entries are made once;
    # and most domains: each is checked once.
    index = runtime.context.search_index.remembering()
    email_of = EmailNormalizer()
    batch = _Batch(first, rows[-1][0] + 1 if rows else job.rows + 1, BatchCounts(), [], [], [], [])
    emails: set[str] = set()
    for start in range(0, len(rows), READY_SLICE):
        if start:
            await _give_way()  # the batch before: its next statement goes out
        firsts: list[ImportRow] = []
        for number, data in rows[start : start + READY_SLICE]:
            batch.counts.rows += 1
            parsed = parse_row(
                number, data, job.rules, now=now, default_time=job.created_at, email_of=email_of
            )
            if isinstance(parsed, list):
                batch.errors += parsed
                batch.counts.failed += 1
                continue
            batch.valid.append(parsed)
            email = parsed.submission.email
            if email is None or email in emails:
                batch.rest.append(parsed)
            else:
                emails.add(email)
                firsts.append(parsed)
        people = [
            NewPerson(r.submission, r.captured_at, r.stage, r.entered_at or r.captured_at)
            for r in firsts
        ]
        ready = prepare_new(
            job.form, people, source=IMPORT, index=index, outbox_source=job.outbox_source
        )
        batch.ready += zip(firsts, ready, strict=True)
    return batch


async def run_import(
    runtime: IntakeRuntime,
    import_id: UUID | None = None,
    lead_ids: dict[int, UUID] | None = None,
    *,
    batches: int | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """The oldest waiting import (or `import_id`) until it is done, `batches` batches were
    committed, or `stopping()`: each batch in one unit of work, the next made ready while it
    is written. Returns how many rows it handled (0: nothing waits, or another runner has
    it). The funnel's stages are read from stage-tracker first (a 503 Problem while away)."""
    job = await _job(runtime, import_id)
    if job is None:
        return 0
    handled = 0
    done = 0
    # The staged rows read ahead on a connection of the run's own: a run holds two of the
    # pool's (one batch at a time holds one, as a small import's request does).
    async with contextlib.AsyncExitStack() as held:
        reader = None
        if batches != 1:
            reader = await held.enter_async_context(runtime.pool.acquire())
        ahead: asyncio.Future[_Batch] | None = asyncio.ensure_future(
            _prepare(runtime, job, job.next_row, reader)
        )
        try:
            while ahead is not None:
                batch = await ahead
                ahead = None
                if stopping():
                    break  # the batch made ready is dropped: the next run makes it again
                done += 1
                more = batch.next_row <= job.rows and (batches is None or done < batches)
                if more and not stopping():
                    # Made ready while this batch is written (a task of its own, started
                    # before the transaction opens: it is in none).
                    ahead = asyncio.ensure_future(_prepare(runtime, job, batch.next_row, reader))
                committed = await _commit(runtime, job, batch, lead_ids)
                if committed is None:
                    break  # another runner moved the import on meanwhile, or it is done
                handled += committed
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
    return handled


async def import_batch(
    runtime: IntakeRuntime, import_id: UUID | None = None, lead_ids: dict[int, UUID] | None = None
) -> int:
    """One batch of the oldest waiting import (or of `import_id`) in one unit of work;
    returns how many rows it handled (0: nothing waits)."""
    return await run_import(runtime, import_id, lead_ids, batches=1)


async def _commit(
    runtime: IntakeRuntime, job: _Job, batch: _Batch, lead_ids: dict[int, UUID] | None
) -> int | None:
    """The batch in one unit of work; the rows it handled, or None when the import is not
    where the batch begins (another runner moved it on, or it is done)."""
    ids: dict[int, UUID] = {}

    async def work(uow: UnitOfWork, careful: bool) -> int | None:
        ids.clear()
        claimed = await store.claim(uow.conn, job.id, lock=True)
        if claimed is None or claimed["next_row"] != batch.first:
            return None  # another runner has it, moved it on, or it is done
        counts = dataclasses.replace(batch.counts)
        errors = list(batch.errors)
        await _import_rows(uow, runtime, job, batch, ids, counts, errors, careful=careful)
        await store.record_batch(uow.conn, job.id, batch.next_row, counts, errors)
        return max(counts.rows, 1)

    try:
        handled = await runtime.transactions.run(lambda uow: work(uow, False))
    except asyncpg.PostgresError as exc:
        if isinstance(exc, _NOT_A_ROW):
            raise
        # A row PostgreSQL refused: the batch again, each row on its own savepoint.
        handled = await runtime.transactions.run(lambda uow: work(uow, True))
    if lead_ids is not None and handled is not None:
        lead_ids.update(ids)
    return handled


async def _import_rows(
    uow: UnitOfWork,
    runtime: IntakeRuntime,
    job: _Job,
    batch: _Batch,
    ids: dict[int, UUID],
    counts: BatchCounts,
    errors: list[RowError],
    *,
    careful: bool,
) -> None:
    now = datetime.now(UTC)
    index = runtime.context.search_index.remembering()
    one_by_one = batch.valid
    if not careful:
        one_by_one = await _in_bulk(uow, job, batch, ids, counts)
    for row in one_by_one:
        try:
            if careful:
                async with uow.conn.transaction():
                    outcome, lead_id = await _import_one(uow, index, job, row, now)
            else:
                outcome, lead_id = await _import_one(uow, index, job, row, now)
        except asyncpg.PostgresError as exc:
            if not careful or isinstance(exc, _NOT_A_ROW):
                raise
            errors.append(RowError(row.row, "row", f"refused by the database: {exc}"[:500]))
            counts.failed += 1
            continue
        ids[row.row] = lead_id
        setattr(counts, outcome, getattr(counts, outcome) + 1)


async def _in_bulk(
    uow: UnitOfWork, job: _Job, batch: _Batch, ids: dict[int, UUID], counts: BatchCounts
) -> list[ImportRow]:
    """The common case at the speed of a few statements per batch: the new people by email
    (nobody has the email, no activity waits for it; both looked up here, in the
    transaction) are written together as they were made ready; known people are counted
    `existing` when they are to be skipped. Returns the rows left to import one by one (phone
    only, an email twice in the batch, a known person to update, an email activities wait
    for, an email taken meanwhile)."""
    known = await known_by_email(uow, [row.submission.email or "" for row, _ in batch.ready])
    new = [p.email or "" for _, p in batch.ready if p.email not in known]
    waited = await emails_waited_for(uow.conn, new)
    rest = list(batch.rest)
    bulk: list[tuple[ImportRow, ReadyPerson]] = []
    for row, person in batch.ready:
        email = row.submission.email
        if email in known and job.on_existing == "skip":
            ids[row.row] = known[email]
            counts.existing += 1
        elif email in known or email in waited:
            rest.append(row)
        else:
            bulk.append((row, person))
    made = await write_new(uow, [p for _, p in bulk], source=IMPORT, form=job.form)
    for (row, _), lead_id in zip(bulk, made, strict=True):
        if lead_id is None:
            rest.append(row)  # taken by a form post a moment ago: as any known person
        else:
            ids[row.row] = lead_id
            counts.imported += 1
    return sorted(rest, key=lambda r: r.row)


async def _import_one(
    uow: UnitOfWork, index: BlindIndex, job: _Job, row: ImportRow, now: datetime
) -> tuple[Outcome, UUID]:
    form = job.form
    captured = await capture(
        uow,
        form,
        row.submission,
        source=IMPORT,
        captured_at=row.captured_at,
        index=index,
        update_known=False,
        imported_stage=row.stage,
        stage_entered_at=row.entered_at or row.captured_at,
    )
    if captured.new_lead:
        return "imported", captured.lead_id
    if job.on_existing == "update" and await fill_known(
        uow, form, captured.lead_id, row.submission, source=IMPORT, at=now, index=index
    ):
        return "updated", captured.lead_id
    return "existing", captured.lead_id


def upload_of(
    form_id: str | None,
    on_existing: str | None,
    mapping: dict[str, str],
    idempotency_key: str | None,
    created_by: str | None,
) -> Upload:
    """The request's options checked (422 naming the one at fault)."""
    if not form_id:
        raise invalid("form_id", "required", "Invalid import")
    choice = on_existing or "skip"
    if choice not in ON_EXISTING:
        raise invalid("on_existing", "skip or update", "Invalid import")
    return Upload(form_id, choice, mapping, idempotency_key, created_by)  # type: ignore[arg-type]


def mapping_problem(exc: MappingInvalid) -> Problem:
    return _refused(exc)
