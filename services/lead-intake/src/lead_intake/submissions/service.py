"""A form post: the person captured (or an earlier answer replayed) in one unit of work."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from funnel_servicekit.problems import field_problem, invalid_fields
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake import intake_metrics
from lead_intake.common.blind_index import BlindIndex
from lead_intake.forms.models import Form
from lead_intake.leads.models import Submission, SubmissionInvalid
from lead_intake.leads.service import capture
from lead_intake.submissions import store


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
) -> tuple[dict[str, Any], bool]:
    """The answer to the post, and whether it is an earlier answer replayed (same key)."""

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
                source="form",
                captured_at=now,
                index=index,
                user_agent=origin.user_agent,
                ip_truncated=origin.ip_truncated,
            )
        except SubmissionInvalid as exc:
            raise invalid_fields(exc.errors, "Invalid submission") from None
        answer = {
            "lead_id": str(captured.lead_id),
            "submission_id": str(captured.submission_id),
            "new_lead": captured.new_lead,
        }
        if idempotency_key is not None:
            await store.remember(uow.conn, scope, idempotency_key, answer)
        return answer, False

    # Run again whole when PostgreSQL undid it (a deadlock with an import of the same people).
    return await transactions.run(work)


async def purge_expired_keys(pool: asyncpg.Pool, hours: float) -> int:
    """Idempotency keys older than `hours` deleted; returns how many."""
    async with pool.acquire() as conn:
        return await store.purge_expired(conn, hours)
