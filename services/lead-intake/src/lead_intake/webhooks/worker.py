"""Meta Lead Ads: fetch each announced lead's fields from the Graph API, retrying until it works.

The webhook carries only ids; they wait in `pending_platform_leads` until a fetch succeeds,
so nothing is lost while Graph (or the network, or the token) fails. Each batch is claimed
in one short transaction (leased, so no other replica fetches it meanwhile), fetched with no
transaction open, and each result recorded in its own: a crash in between only delays a lead
until its lease ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from funnel_servicekit.loops import PollLoop
from funnel_servicekit.unit_of_work import Outbox, Transactions
from lead_intake.common.blind_index import BlindIndex
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks import service
from lead_intake.webhooks.store import PendingLead

log = logging.getLogger(__name__)
BATCH = 10
GRAPH_TIMEOUT_SECONDS = 10.0
# Longer than a whole batch of fetches that all time out: a lead is not due again (for this
# or another replica) while its fetch may still be under way.
LEASE_SECONDS = BATCH * GRAPH_TIMEOUT_SECONDS + 60.0


class MetaFetcher(PollLoop):
    def __init__(
        self, pool: asyncpg.Pool, settings: IntakeSettings, client: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__(
            "meta-lead-fetcher", poll_seconds=settings.meta_fetch_poll_seconds, batch_size=BATCH
        )
        self.settings = settings
        self.transactions = Transactions(pool, Outbox(settings.db_schema, settings.service_name))
        self.index = BlindIndex(settings.search_key())
        self._given_client = client  # tests hand one in; otherwise each run makes its own
        self._client = client
        self._limit_applied = False

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[None]:
        self._limit_applied = False  # each run applies the attempt limit at its first step
        async with httpx.AsyncClient(timeout=GRAPH_TIMEOUT_SECONDS) as client:
            # Not the client of an earlier run: that one is closed (a crashed loop runs again).
            self._client = self._given_client or client
            try:
                yield
            finally:
                self._client = self._given_client

    async def step(self) -> int:
        if not self._limit_applied:
            # In a step, not at start: a database away is a batch retried, not a crash.
            await self.apply_attempt_limit()
        return await self.fetch_due()

    async def apply_attempt_limit(self) -> None:
        """Parked leads the configured limit allows more attempts become due, and exhausted
        ones still in the due range are parked (`store.unpark`)."""
        due, parked = await service.unpark_meta_leads(
            self.transactions, self.settings.meta_fetch_max_attempts
        )
        self._limit_applied = True
        if due or parked:
            log.info(
                "meta leads parked or made due by the attempt limit",
                extra={"due": due, "parked": parked},
            )

    async def fetch_due(self) -> int:
        """One batch of due leads: fetched and captured, or scheduled again. Returns how many."""
        due = await service.claim_due_meta_leads(
            self.transactions, BATCH, self.settings.meta_fetch_max_attempts, LEASE_SECONDS
        )
        for lead in due:
            await self._one(lead)
        return len(due)

    async def _one(self, lead: PendingLead) -> None:
        try:
            data = await self._fetch(lead.external_id)  # no transaction open
        except (httpx.HTTPError, ValueError) as exc:
            # The error's text may carry the URL and so the token: keep only its kind.
            reason = type(exc).__name__
            if isinstance(exc, httpx.HTTPStatusError):
                reason += f" {exc.response.status_code}"
            await service.meta_fetch_failed(self.transactions, lead, reason)
            if lead.last:
                log.error(
                    "meta lead fetch failed; its attempts are used up, parked",
                    extra={"reason": reason, "attempts": lead.attempts + 1},
                )
            else:
                log.warning("meta lead fetch failed; will retry", extra={"reason": reason})
            return
        await service.record_meta_lead(self.transactions, lead, data, self.index)

    async def _fetch(self, leadgen_id: str) -> Any:
        if self._client is None:
            raise RuntimeError("the fetcher's HTTP client is opened by run()")
        token = self.settings.meta_access_token
        response = await self._client.get(
            f"{self.settings.meta_graph_base_url.rstrip('/')}/{leadgen_id}",
            params={
                "access_token": token.get_secret_value() if token else "",
                # The ad, ad set and campaign come with the fields: the lead's first touch.
                "fields": "id,created_time,field_data,ad_id,adset_id,campaign_id,form_id",
            },
        )
        response.raise_for_status()
        return response.json()
