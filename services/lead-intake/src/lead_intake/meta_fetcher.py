"""Meta Lead Ads: fetch each announced lead's fields from the Graph API, retrying until it works.

The webhook carries only ids; they wait in `pending_platform_leads` until a fetch succeeds,
so nothing is lost while Graph (or the network, or the token) fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from funnel_servicekit.runtime import Worker
from lead_intake.capture import Outbox
from lead_intake.forms import Form
from lead_intake.meta_forms import field_map_for, meta_form_id
from lead_intake.platform_capture import capture_platform_lead
from lead_intake.platforms import META, PayloadInvalid, PlatformLead, meta_values
from lead_intake.runtime import IntakeRuntime
from lead_intake.settings import IntakeSettings
from lead_intake.store import forms as forms_store
from lead_intake.store import meta_forms as meta_forms_store
from lead_intake.store import platform_leads
from lead_intake.store.platform_leads import PendingLead
from lead_intake.submission import SubmissionInvalid

log = logging.getLogger(__name__)
BATCH = 10  # fetched inside one transaction: keep the row locks short
INVALID_RETRY_SECONDS = 3600.0


def backoff_seconds(attempts: int) -> float:
    """1, 2, 4, ... seconds, at most five minutes."""
    return float(min(2**attempts, 300))


class MetaFetcher:
    def __init__(
        self, pool: asyncpg.Pool, settings: IntakeSettings, client: httpx.AsyncClient | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.outbox = Outbox(settings.db_schema, settings.service_name)
        self._given_client = client  # tests hand one in; otherwise each run makes its own
        self._client = client
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            # Not the client of an earlier run: that one is closed (a crashed loop runs again).
            self._client = self._given_client or client
            while not self._stopping.is_set():
                try:
                    handled = await self.fetch_due()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.warning("meta lead fetcher: database unavailable; retrying", exc_info=True)
                    handled = 0
                if handled < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._stopping.wait(), self.settings.meta_fetch_poll_seconds
                        )

    async def fetch_due(self) -> int:
        """One batch of due leads: fetched and captured, or scheduled again. Returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            due = await platform_leads.claim_due(
                conn, META, BATCH, self.settings.meta_fetch_max_attempts
            )
            for lead in due:
                await self._one(conn, lead)
        return len(due)

    async def _one(self, conn: asyncpg.Connection, lead: PendingLead) -> None:
        try:
            data = await self._fetch(lead.external_id)
        except (httpx.HTTPError, ValueError) as exc:
            # The error's text may carry the URL and so the token: keep only its kind.
            reason = type(exc).__name__
            if isinstance(exc, httpx.HTTPStatusError):
                reason += f" {exc.response.status_code}"
            await platform_leads.retry_later(conn, lead, reason, backoff_seconds(lead.attempts))
            log.warning("meta lead fetch failed; will retry", extra={"reason": reason})
            return
        form = await forms_store.get_form(conn, lead.form_id)
        try:
            if form is None:
                raise PayloadInvalid("form_id", "the form Meta leads join is gone")
            values = meta_values(data, await _field_map(conn, form, lead))
            async with conn.transaction():  # a savepoint: a failure leaves the batch intact
                await capture_platform_lead(
                    conn,
                    self.outbox,
                    form,
                    META,
                    PlatformLead(lead.external_id, values),
                    now=datetime.now(UTC),
                )
        except (PayloadInvalid, SubmissionInvalid) as exc:
            # Retrying soon will not change the data: keep it, look again much later.
            await platform_leads.retry_later(conn, lead, str(exc), INVALID_RETRY_SECONDS)
            log.warning("meta lead does not fit its form", extra={"error": type(exc).__name__})
            return
        await platform_leads.done(conn, lead)

    async def _fetch(self, leadgen_id: str) -> Any:
        assert self._client is not None
        token = self.settings.meta_access_token
        response = await self._client.get(
            f"{self.settings.meta_graph_base_url.rstrip('/')}/{leadgen_id}",
            params={
                "access_token": token.get_secret_value() if token else "",
                "fields": "id,created_time,field_data",
            },
        )
        response.raise_for_status()
        return response.json()


async def _field_map(conn: asyncpg.Connection, form: Form, lead: PendingLead) -> dict[str, str]:
    """The Meta form's own question names (mapped now, not when the notice came), the form's."""
    meta_id = meta_form_id(lead.notice)
    mapping = await meta_forms_store.get_meta_form(conn, meta_id) if meta_id else None
    if mapping is not None and mapping.form_id != form.id:
        mapping = None  # remapped since: its names are another form's
    return field_map_for(form.settings.field_map, mapping)


def meta_fetcher(runtime: IntakeRuntime, settings: IntakeSettings) -> Worker:
    fetcher = MetaFetcher(runtime.pool, settings)
    return Worker("meta-lead-fetcher", fetcher.run, fetcher.stop)
