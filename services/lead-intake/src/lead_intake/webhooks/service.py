"""Ad platforms and webhooks: a delivered lead captured once however often it arrives; Meta
notices kept until their lead's fields are fetched; Meta form mappings; webhook secrets.

The Meta lead fetcher's steps live here too: leads are claimed in one short transaction,
fetched from Graph with no transaction open, and each result recorded in its own.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import SecretStr

from funnel_servicekit.group_commit import GroupCommit
from funnel_servicekit.problems import Problem, field_problem, invalid, invalid_fields, not_found
from funnel_servicekit.unit_of_work import Transactions, UnitOfWork
from lead_intake import intake_metrics
from lead_intake.common.blind_index import BlindIndex
from lead_intake.forms import service as forms
from lead_intake.forms import store as forms_store
from lead_intake.forms.models import Form
from lead_intake.leads.models import Captured, SubmissionInvalid
from lead_intake.leads.service import capture
from lead_intake.runtime import IntakeRuntime
from lead_intake.submissions.models import parse_submission
from lead_intake.webhooks import store
from lead_intake.webhooks.models import (
    META,
    SIGNATURE_TOLERANCE_SECONDS,
    FormSecret,
    MetaForm,
    MetaFormIn,
    MetaFormList,
    PayloadInvalid,
    PlatformLead,
    SecretIn,
    SecretList,
    SecretOut,
    WebhookAccepted,
    field_map_for,
    meta_ad_ids,
    meta_form_id,
    meta_values,
    new_secret,
)
from lead_intake.webhooks.store import PendingLead

log = logging.getLogger(__name__)
INVALID_RETRY_SECONDS = 3600.0


def backoff_seconds(attempts: int) -> float:
    """1, 2, 4, ... seconds, at most five minutes."""
    return float(min(2**attempts, 300))


# -- Deliveries ------------------------------------------------------------------------------


async def capture_platform_lead(
    uow: UnitOfWork,
    form: Form,
    platform: str,
    lead: PlatformLead,
    *,
    now: datetime,
    index: BlindIndex,
) -> Captured:
    """Inside the caller's unit of work; a redelivery returns the first capture's lead.

    Raises SubmissionInvalid when the mapped values break the form's rules.
    """
    # Two deliveries of one lead at once: the second waits here, then finds it seen.
    await store.lock_delivery(uow.conn, platform, lead.external_id)
    known = await store.seen(uow.conn, platform, lead.external_id)
    if known is not None:
        return Captured(known, None, False)
    sub = parse_submission(lead.values, form.settings, now=now)
    if lead.test:
        sub = dataclasses.replace(sub, test=True)
    if lead.ad_ids:
        # The ad that brought them: its platform and campaign as UTM (reporting's breakdowns
        # read those), its ids on the touchpoint; tags the form mapped itself win.
        tp = sub.touchpoint
        utm = tp.utm.model_copy(
            update={
                "source": tp.utm.source or lead.source,
                "campaign": tp.utm.campaign or lead.campaign,
            }
        )
        sub = dataclasses.replace(
            sub, touchpoint=dataclasses.replace(tp, utm=utm, ad_ids=lead.ad_ids)
        )
    captured = await capture(uow, form, sub, source=platform, captured_at=now, index=index)
    await store.mark_seen(uow.conn, platform, lead.external_id, captured.lead_id)
    return captured


@dataclass(frozen=True)
class UsedSignature:
    """A timestamped signature a delivery came with: used once, in the capture's transaction."""

    digest: str
    timestamp: int


def bad_signature(field: str, message: str = "does not match") -> Problem:
    """The one 401 of every webhook: the same whether the form exists or not."""
    return field_problem(
        401,
        "Bad signature",
        "the payload is not signed with the shared secret",
        type_="urn:funnel:problem:bad-signature",
        field=field,
        message=message,
    )


async def capture_delivery(
    transactions: Transactions,
    form: Form,
    platform: str,
    lead: PlatformLead,
    index: BlindIndex,
    signature: UsedSignature | None = None,
    group: GroupCommit | None = None,
) -> WebhookAccepted:
    """A webhook's lead captured (or recognized); a 422 when it does not fit the form, a 401
    when its signature was used before (a replay: every replica sees the same table). With
    `group`, the delivery shares a transaction with concurrent posts (decision 0052)."""

    async def work(uow: UnitOfWork) -> Captured:
        if signature is not None and not await store.use_signature(
            uow.conn,
            form.id,
            signature.digest,
            datetime.fromtimestamp(signature.timestamp, UTC),
            2 * SIGNATURE_TOLERANCE_SECONDS,
        ):
            raise bad_signature("X-Funnel-Signature", "already used (a replay)")
        return await capture_platform_lead(
            uow, form, platform, lead, now=datetime.now(UTC), index=index
        )

    try:
        if group is None:
            async with transactions() as uow:
                captured = await work(uow)
        else:
            captured = await group.run(transactions, work)
    except SubmissionInvalid as exc:
        raise invalid_fields(exc.errors, "Lead does not fit the form") from None
    return WebhookAccepted(lead_id=str(captured.lead_id), new_lead=captured.new_lead)


async def count_delivery(
    runtime: IntakeRuntime, platform: str, form_id: str, client_ip: str | None
) -> None:
    """One hit on the webhook limits (per source address, per form), before anything else;
    the 429 past them."""
    try:
        await runtime.context.rate_limits.check_webhook(runtime.pool, platform, form_id, client_ip)
    except Problem:
        intake_metrics.RATE_LIMITED.labels("webhooks").inc()
        raise


def secret_of(value: SecretStr | None, platform: str) -> str:
    """The service-wide secret for a platform; 404 when this service has none."""
    if value is None:
        raise field_problem(
            404,
            "Webhook not configured",
            f"this service has no secret for {platform}",
            type_="urn:funnel:problem:not-configured",
            field="platform",
            message="not configured",
        )
    return value.get_secret_value()


async def form_secrets(
    runtime: IntakeRuntime, form_id: str, platform: str, fallback: SecretStr | None
) -> list[str]:
    """The form's own secrets (the current one, and the previous during its grace), else the
    service-wide one; looked up the same way whether the form exists or not."""
    async with runtime.pool.acquire() as conn:
        stored = await store.get_secret(conn, form_id, platform)
    if stored is not None:
        return stored.valid(datetime.now(UTC))
    # None at all: nothing can be signed right, and the 401 is the same as for a bad signature
    # (a 404 here would tell which forms have secrets of their own).
    return [fallback.get_secret_value()] if fallback is not None else []


# -- Meta: notices kept, leads fetched later -------------------------------------------------


async def keep_meta_notices(
    runtime: IntakeRuntime, announced: list[tuple[str, dict[str, Any]]]
) -> WebhookAccepted:
    """Each announced lead waits, with the form it joins, until the fetcher reads it."""
    form_ids = await _meta_targets(runtime, [notice for _, notice in announced])
    async with runtime.transactions() as uow:
        for (leadgen_id, notice), form_id in zip(announced, form_ids, strict=True):
            await store.add_pending(uow.conn, META, leadgen_id, form_id, notice)
    return WebhookAccepted(received=len(announced))


async def _meta_targets(runtime: IntakeRuntime, notices: list[dict[str, Any]]) -> list[str]:
    """Our form for each announced lead: its Meta form's mapping, else the service-wide form.

    With neither, a 503: Meta delivers the notice again later, once the form is registered.
    """
    named = [meta_form_id(n) for n in notices]
    wanted = sorted({m for m in named if m is not None})
    async with runtime.pool.acquire() as conn:
        mapped = await store.get_meta_forms(conn, wanted) if wanted else {}
    targets: list[str] = []
    fallback = runtime.settings.meta_form_id
    for meta_id in named:
        mapping = mapped.get(meta_id) if meta_id is not None else None
        targets.append(mapping.form_id if mapping is not None else fallback)
    if fallback in targets and await forms.cached_form(runtime, fallback) is None:
        raise Problem(
            503,
            "Meta form missing",
            f"map the Meta form (PUT /v1/meta-forms/{{id}}) or register the form {fallback!r}",
            type_="urn:funnel:problem:not-configured",
        )
    return targets


async def claim_due_meta_leads(
    transactions: Transactions, limit: int, max_attempts: int, lease_seconds: float
) -> list[PendingLead]:
    """Due Meta leads, leased in one short transaction (fetched after it commits)."""
    async with transactions() as uow:
        return await store.claim_due(uow.conn, META, limit, max_attempts, lease_seconds)


async def unpark_meta_leads(transactions: Transactions, max_attempts: int) -> tuple[int, int]:
    """Meta leads parked or due as `max_attempts` says now: (made due, parked)."""
    async with transactions() as uow:
        return await store.unpark(uow.conn, META, max_attempts)


async def meta_fetch_failed(transactions: Transactions, lead: PendingLead, reason: str) -> None:
    """Graph did not answer: the lead waits, with a growing backoff."""
    async with transactions() as uow:
        await store.retry_later(uow.conn, lead, reason, backoff_seconds(lead.attempts))


async def record_meta_lead(
    transactions: Transactions, lead: PendingLead, data: Any, index: BlindIndex
) -> bool:
    """A fetched Meta lead captured in its own unit of work; False when it does not fit its
    form (kept, and looked at again much later: retrying soon will not change the data)."""

    async def work(uow: UnitOfWork) -> bool:
        form = await forms_store.get_form(uow.conn, lead.form_id)
        try:
            if form is None:
                raise PayloadInvalid("form_id", "the form Meta leads join is gone")
            values = meta_values(data, await _field_map(uow.conn, form, lead))
            async with uow.conn.transaction():  # a savepoint: a failure leaves the rest intact
                await capture_platform_lead(
                    uow,
                    form,
                    META,
                    PlatformLead(lead.external_id, values, source="meta", ad_ids=meta_ad_ids(data)),
                    now=datetime.now(UTC),
                    index=index,
                )
        except (PayloadInvalid, SubmissionInvalid) as exc:
            await store.retry_later(uow.conn, lead, str(exc), INVALID_RETRY_SECONDS)
            if lead.last:
                log.error(
                    "meta lead does not fit its form; its attempts are used up, parked",
                    extra={"error": type(exc).__name__, "attempts": lead.attempts + 1},
                )
            else:
                log.warning("meta lead does not fit its form", extra={"error": type(exc).__name__})
            return False
        await store.done(uow.conn, lead)
        return True

    return await transactions.run(work)


async def _field_map(conn: asyncpg.Connection, form: Form, lead: PendingLead) -> dict[str, str]:
    """The Meta form's own question names (mapped now, not when the notice came), the form's."""
    meta_id = meta_form_id(lead.notice)
    mapping = await store.get_meta_form(conn, meta_id) if meta_id else None
    if mapping is not None and mapping.form_id != form.id:
        mapping = None  # remapped since: its names are another form's
    return field_map_for(form.settings.field_map, mapping)


# -- Meta form mappings (forms:admin) --------------------------------------------------------


def _unknown_meta_form(meta_form_id: str) -> Problem:
    return not_found("Meta form", "meta_form_id", meta_form_id)


async def save_meta_form(
    runtime: IntakeRuntime, meta_form_id: str, body: MetaFormIn
) -> tuple[MetaForm, bool]:
    """Route a Meta lead form's leads to one of our forms; True when created."""
    async with runtime.transactions() as uow:
        if await forms_store.get_form(uow.conn, body.form_id) is None:
            raise invalid("form_id", "unknown form", "Invalid mapping")
        return await store.save_meta_form(uow.conn, meta_form_id, body)


async def list_meta_forms(runtime: IntakeRuntime, *, limit: int, after: str | None) -> MetaFormList:
    async with runtime.pool.acquire() as conn:
        found = await store.list_meta_forms(conn, limit=limit, after=after)
    return MetaFormList(
        meta_forms=found, next_after=found[-1].meta_form_id if len(found) == limit else None
    )


async def get_meta_form(runtime: IntakeRuntime, meta_form_id: str) -> MetaForm:
    async with runtime.pool.acquire() as conn:
        found = await store.get_meta_form(conn, meta_form_id)
    if found is None:
        raise _unknown_meta_form(meta_form_id)
    return found


async def delete_meta_form(runtime: IntakeRuntime, meta_form_id: str) -> None:
    async with runtime.pool.acquire() as conn:
        if not await store.delete_meta_form(conn, meta_form_id):
            raise _unknown_meta_form(meta_form_id)


# -- Webhook secrets per form (forms:admin) --------------------------------------------------


async def list_webhook_secrets(runtime: IntakeRuntime, form_id: str) -> SecretList:
    async with runtime.pool.acquire() as conn:
        await forms.registered_form(conn, form_id)
        stored = await store.list_secrets(conn, form_id)
    now = datetime.now(UTC)
    return SecretList(secrets=[SecretOut.of(s, now=now) for s in stored])


async def rotate_webhook_secret(
    runtime: IntakeRuntime, form_id: str, platform: str, body: SecretIn
) -> SecretOut:
    """Set or rotate the form's secret; the previous one stays valid a while."""
    secret = body.secret or new_secret()
    async with runtime.transactions() as uow:
        await forms.registered_form(uow.conn, form_id)
        stored: FormSecret = await store.rotate_secret(
            uow.conn, form_id, platform, secret, body.previous_valid_seconds
        )
    return SecretOut.of(stored, now=datetime.now(UTC), generated=body.secret is None)


async def delete_webhook_secret(runtime: IntakeRuntime, form_id: str, platform: str) -> None:
    async with runtime.pool.acquire() as conn:
        deleted = await store.delete_secret(conn, form_id, platform)
    if not deleted:
        raise not_found("webhook secret", "platform", platform)
