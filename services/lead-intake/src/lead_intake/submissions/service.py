"""A form post: the person captured (or an earlier answer replayed) in one unit of work.

Concurrent posts share a transaction when a `GroupCommit` is given (docs/decisions/0052):
each post is a savepoint of its group's transaction and is answered after the group
committed; its own refusal (a reused idempotency key, a phone-only post without email for a
new person) is rolled back to its savepoint and leaves the others of its group alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from funnel_contracts.topics import LEAD_EVENTS
from funnel_servicekit import metrics
from funnel_servicekit.group_commit import NOT_DONE, GroupCommit
from funnel_servicekit.problems import field_problem, invalid_fields
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake import intake_metrics
from lead_intake.common.blind_index import BlindIndex
from lead_intake.forms.models import Form
from lead_intake.leads.models import Captured, Submission, SubmissionInvalid, SubmissionOrigin
from lead_intake.leads.service import capture, prepare_person, takes_ready_person, write_people
from lead_intake.leads.store import ReadyLead
from lead_intake.submissions import store

FORM = "form"  # a form post's source


@dataclass(frozen=True)
class PostOrigin:
    """What a submission records of the request that brought it."""

    user_agent: str | None
    ip_truncated: str | None


def body_digest(values: Mapping[str, object]) -> str:
    """The parsed fields' hash, not the raw bytes': a browser retrying a multipart post
    changes the boundary but not the submission."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


async def submit(
    transactions: Transactions,
    form: Form,
    sub: Submission,
    *,
    origin: PostOrigin,
    now: datetime,
    idempotency_key: str | None,
    digest: str,
    index: BlindIndex,
    group: GroupCommit | None = None,
) -> tuple[dict[str, Any], bool]:
    """The answer to the post, and whether it is an earlier answer replayed (same key).

    With `group`, the post joins a group transaction; without, it has one of its own.
    """

    # A post without a key by a person who may be new is made ready now (in this task, with
    # no database read): its group may write it with others' in one statement.
    ready = None
    if idempotency_key is None and takes_ready_person(sub):
        ready = prepare_person(
            form,
            sub,
            SubmissionOrigin(form.id, origin.user_agent, origin.ip_truncated),
            source=FORM,
            captured_at=now,
            index=index,
            outbox_source=transactions.outbox.source,
        )

    async def work(uow: UnitOfWork) -> tuple[dict[str, Any], bool]:
        scope = f"form:{form.id}"
        if idempotency_key is not None:
            try:
                stored = await store.claim(uow.conn, scope, idempotency_key, digest)
            except store.KeyReused:
                raise field_problem(
                    422,
                    "Idempotency-Key reused",
                    "this key was used with a different body; use a new key",
                    type_="urn:funnel:problem:idempotency-key-reused",
                    field="Idempotency-Key",
                    message="reused with another body",
                ) from None
            if stored is not None:
                intake_metrics.IDEMPOTENT_REPLAYS.inc()
                return stored, True
        try:
            captured = await capture(
                uow,
                form,
                sub,
                source=FORM,
                captured_at=now,
                index=index,
                user_agent=origin.user_agent,
                ip_truncated=origin.ip_truncated,
                ready=ready,
            )
        except SubmissionInvalid as exc:
            raise invalid_fields(exc.errors, "Invalid submission") from None
        answer = _answer(captured)
        if idempotency_key is not None:
            await store.remember(uow.conn, scope, idempotency_key, answer)
        return answer, False

    # Run again whole when PostgreSQL undid it (a deadlock with an import of the same people).
    if group is None:
        answer = await transactions.run(work)
    else:
        answer = await group.run(transactions, work, item=ready)
    if not answer[1]:
        # Intake's hop of the pipeline: from the post's capture time to its rows committed.
        metrics.EVENT_HOP_SECONDS.labels("committed", LEAD_EVENTS).observe(
            max(time.time() - now.timestamp(), 0.0)
        )
    return answer


async def write_batch(uow: UnitOfWork, people: list[ReadyLead], *, index: BlindIndex) -> list[Any]:
    """A group's posts made ready (`submit`), written together: each post's answer as `work`
    gives it, or NOT_DONE for a person known already (their post then runs as a returning
    person's, in the same group)."""
    captured = await write_people(uow, people, index=index)
    return [NOT_DONE if c is None else (_answer(c), False) for c in captured]


def _answer(captured: Captured) -> dict[str, Any]:
    return {
        "lead_id": str(captured.lead_id),
        "submission_id": str(captured.submission_id),
        "new_lead": captured.new_lead,
    }


async def purge_expired_keys(pool: asyncpg.Pool, hours: float) -> int:
    """Idempotency keys older than `hours` deleted; returns how many."""
    async with pool.acquire() as conn:
        return await store.purge_expired(conn, hours)
