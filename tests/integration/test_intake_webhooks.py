"""Ad platforms and webhooks on the real database, with payloads shaped as each platform's
public documentation shows them. Meta's Graph API is a local HTTP server that fails first."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from funnel_contracts import LeadCapturedV2
from funnel_devstack.ports import free_port
from funnel_devstack.stack import Stack
from funnel_servicekit.runtime import Worker, supervise
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks import service as meta_service
from lead_intake.webhooks import store as webhook_store
from lead_intake.webhooks.models import META, timed_signature
from lead_intake.webhooks.worker import LEASE_SECONDS, MetaFetcher
from tests.integration.kit_support import CrashingPool, eventually
from tests.integration.plans import generic_plan_as_sent, rows_read, sent_with_args
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake

pytestmark = pytest.mark.integration
META_SECRET = "meta-app-secret-0123456789"
TYPEFORM_SECRET = "typeform-secret-abcdef"
GOOGLE_KEY = "google-key-xyz-987"
HMAC_SECRET = "generic-hmac-secret-42"
LEADGEN_ID = "444444444444"


class FakeGraph:
    """Answers GET /<leadgen_id> like the Graph API, after `failures` 500s."""

    def __init__(self, failures: int, leads: dict[str, dict[str, Any]] | None = None) -> None:
        self.failures = failures
        self.requests: list[str] = []
        self.leads = leads or {}

    def lead(self, leadgen_id: str = LEADGEN_ID) -> dict[str, Any]:
        if leadgen_id in self.leads:
            return self.leads[leadgen_id]
        return {
            "created_time": "2026-11-01T09:30:00+0000",
            "id": LEADGEN_ID,
            "ad_id": "120200000000000001",
            "adset_id": "120200000000000002",
            "campaign_id": "120200000000000003",
            "field_data": [
                {"name": "email", "values": ["Meta.Person@Example.com"]},
                {"name": "full_name", "values": ["Meta Person"]},
                {"name": "phone_number", "values": ["+12015550123"]},
                {"name": "what_is_your_budget?", "values": ["10k"]},
            ],
        }


@contextlib.contextmanager
def graph_server(graph: FakeGraph) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            graph.requests.append(self.path)
            if graph.failures > 0:
                graph.failures -= 1
                status, body = 500, b'{"error": {"message": "try later"}}'
            else:
                leadgen_id = self.path.split("?")[0].rsplit("/", 1)[-1]
                status, body = 200, json.dumps(graph.lead(leadgen_id)).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v21.0"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def graph() -> Iterator[tuple[FakeGraph, str]]:
    fake = FakeGraph(failures=2)
    with graph_server(fake) as url:
        yield fake, url


@pytest.fixture
async def intake(
    fresh_dsn: str, infra: Stack, graph: tuple[FakeGraph, str]
) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn,
        infra.kafka_bootstrap,
        meta_app_secret=META_SECRET,
        meta_verify_token="verify-me",
        meta_access_token="graph-token",
        meta_graph_base_url=graph[1],
        meta_form_id="meta-leads",
        typeform_secret=TYPEFORM_SECRET,
        google_ads_key=GOOGLE_KEY,
        webhook_hmac_secret=HMAC_SECRET,
    ) as running:
        await running.create_form(
            "meta-leads",
            default_phone_region="US",
            fields=[{"name": "budget"}],
            field_map={"what_is_your_budget?": "budget"},
        )
        await running.create_form(
            "typeform",
            fields=[{"name": "plan"}],
            field_map={"first_name_ref": "first_name", "plan_ref": "plan"},
        )
        await running.create_form("google", default_phone_region="US")
        await running.create_form(
            "partner",
            field_map={
                "contact.email": "email",
                "contact.name.first": "first_name",
                "tracking.source": "utm_source",
            },
        )
        yield running


def _hex(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


META_NOTICE = {
    "object": "page",
    "entry": [
        {
            "id": "153125381133",
            "time": 1730453400,
            "changes": [
                {
                    "field": "leadgen",
                    "value": {
                        "ad_id": "444444444",
                        "form_id": "444444444444",
                        "leadgen_id": LEADGEN_ID,
                        "created_time": 1730453400,
                        "page_id": "153125381133",
                        "adgroup_id": "44444444444",
                    },
                }
            ],
        }
    ],
}


async def test_meta_handshake_echoes_the_challenge_only_for_the_verify_token(
    intake: Intake,
) -> None:
    ok = await intake.client.get(
        "/v1/webhooks/meta",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "verify-me",
            "hub.challenge": "1158201444",
        },
    )
    wrong = await intake.client.get(
        "/v1/webhooks/meta",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "guess",
            "hub.challenge": "1158201444",
        },
    )

    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert wrong.status_code == 401
    assert [e["field"] for e in wrong.json()["errors"]] == ["hub.verify_token"]


async def test_a_meta_lead_waits_through_graph_failures_and_is_captured_once(
    intake: Intake, graph: tuple[FakeGraph, str]
) -> None:
    body = json.dumps(META_NOTICE).encode()
    bad = await intake.client.post(
        "/v1/webhooks/meta", content=body, headers={"x-hub-signature-256": _hex("wrong", body)}
    )
    signed = {"x-hub-signature-256": _hex(META_SECRET, body), "content-type": "application/json"}
    first = await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)
    again = await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)

    assert bad.status_code == 401
    assert [e["field"] for e in bad.json()["errors"]] == ["X-Hub-Signature-256"]
    assert first.status_code == again.status_code == 200
    assert await intake.count("pending_platform_leads") == 1

    settings = IntakeSettings(
        database_url="unused",
        meta_access_token="graph-token",
        meta_graph_base_url=graph[1],
        db_schema="intake",
    )
    async with httpx.AsyncClient(timeout=5) as client:
        fetcher = MetaFetcher(intake.pool, settings, client)
        for expected_attempts in (1, 2):  # Graph answers 500 twice: the lead stays pending
            assert await fetcher.fetch_due() == 1
            row = await intake.pool.fetchrow(
                "SELECT attempts, last_error FROM pending_platform_leads"
            )
            assert (row["attempts"], row["last_error"]) == (
                expected_attempts,
                "HTTPStatusError 500",
            )
            assert await fetcher.fetch_due() == 0  # not due yet: backoff
            await intake.pool.execute("UPDATE pending_platform_leads SET next_attempt_at = now()")
        assert await fetcher.fetch_due() == 1

    assert await intake.count("pending_platform_leads") == 0
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    assert event.source == "meta-lead-ads"
    person = await intake.person(event)
    assert (person.email, person.first_name, person.last_name, person.phone) == (
        "meta.person@example.com",
        "Meta",
        "Person",
        "+12015550123",
    )
    assert event.qualification == {"budget": "10k"}  # a BANT answer, mapped from its question
    # The ad it came from, fetched with the lead: its platform and campaign as UTM, its ids.
    assert (event.utm.source, event.utm.campaign) == ("meta", "120200000000000003")
    first = await intake.val("SELECT first_touch FROM leads WHERE id = $1", event.lead_id)
    assert first["ad_ids"] == {
        "ad_id": "120200000000000001", "adset_id": "120200000000000002",
        "campaign_id": "120200000000000003",
    }  # fmt: skip
    assert all("campaign_id" in path for path in graph[0].requests)
    assert all("access_token=graph-token" in path for path in graph[0].requests)
    assert len(graph[0].requests) == 3

    # Meta redelivers the notice: it is recognized, nothing is fetched or captured again.
    redelivered = await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)
    assert redelivered.status_code == 200
    assert await intake.count("pending_platform_leads") == 0
    assert await intake.count("leads") == 1


async def test_the_meta_fetcher_restarted_after_a_crash_fetches_with_a_new_client(
    intake: Intake, graph: tuple[FakeGraph, str]
) -> None:
    """The runtime runs a crashed loop again on the same object: the HTTP client the first
    run opened (and closed when it crashed) must not be the one the second run uses."""
    fake, url = graph
    fake.failures = 0
    body = json.dumps(META_NOTICE).encode()
    signed = {"x-hub-signature-256": _hex(META_SECRET, body), "content-type": "application/json"}
    assert (await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)).is_success
    settings = IntakeSettings(
        database_url="unused",
        meta_access_token="graph-token",
        meta_graph_base_url=url,
        meta_fetch_poll_seconds=0.05,
        db_schema="intake",
    )
    pool = CrashingPool(intake.pool)
    fetcher = MetaFetcher(cast(asyncpg.Pool, pool), settings)  # its own client, per run
    stopping = asyncio.Event()

    async def quick(stopping: asyncio.Event, seconds: float) -> None:
        await asyncio.sleep(0.05)

    async def fetched() -> int:
        return len(fake.requests)

    supervised = asyncio.create_task(
        supervise(Worker("meta-lead-fetcher", fetcher.run, fetcher.stop), stopping, pause=quick)
    )
    try:
        await eventually(fetched, lambda n: n >= 1, timeout=10)  # the first run's client
        await eventually(lambda: intake.count("pending_platform_leads"), lambda n: n == 0)
        second = {**META_NOTICE}
        second["entry"] = [
            {
                **META_NOTICE["entry"][0],  # type: ignore[index]
                "changes": [
                    {
                        "field": "leadgen",
                        "value": {"leadgen_id": "555555555555", "form_id": "444444444444"},
                    }
                ],
            }
        ]
        fake.leads["555555555555"] = {
            **fake.lead(),
            "id": "555555555555",
            "field_data": [{"name": "email", "values": ["second.person@example.com"]}],
        }
        pool.crash_next()  # the next batch crashes the loop; the supervisor runs it again
        body2 = json.dumps(second).encode()
        signed2 = {**signed, "x-hub-signature-256": _hex(META_SECRET, body2)}
        response = await intake.client.post("/v1/webhooks/meta", content=body2, headers=signed2)
        assert response.is_success
        await eventually(fetched, lambda n: n >= 2, timeout=15)
        await eventually(lambda: intake.count("pending_platform_leads"), lambda n: n == 0)
    finally:
        stopping.set()
        fetcher.stop()
        await asyncio.wait_for(supervised, 10)
    assert pool.crashes == 1
    assert await intake.count("leads") == 2
    assert [p.rsplit("/", 1)[-1].split("?")[0] for p in fake.requests] == [
        LEADGEN_ID,
        "555555555555",
    ]


async def test_a_claimed_meta_lead_is_leased_then_fetched_once_with_no_transaction_open(
    intake: Intake, graph: tuple[FakeGraph, str]
) -> None:
    """A replica that claims a lead and dies before recording it only delays the lead (its
    lease ends); while leased nobody else fetches it; Graph is called outside any transaction."""
    fake, url = graph
    body = json.dumps(META_NOTICE).encode()
    signed = {"x-hub-signature-256": _hex(META_SECRET, body), "content-type": "application/json"}
    assert (await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)).is_success
    settings = IntakeSettings(
        database_url="unused",
        meta_access_token="graph-token",
        meta_graph_base_url=url,
        db_schema="intake",
    )
    open_while_fetching: list[int] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        open_while_fetching.append(
            await intake.pool.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND state LIKE 'idle in transaction%'
                     AND query LIKE '%pending_platform_leads%'"""
            )
        )
        return httpx.Response(200, json=fake.lead())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        fetcher = MetaFetcher(intake.pool, settings, client)
        [claimed] = await meta_service.claim_due_meta_leads(
            fetcher.transactions, 10, settings.meta_fetch_max_attempts, LEASE_SECONDS
        )  # ... and the claimer dies here
        assert (claimed.external_id, claimed.attempts) == (LEADGEN_ID, 0)
        assert await fetcher.fetch_due() == 0  # leased: not fetched a second time meanwhile
        row = await intake.pool.fetchrow(
            """SELECT attempts, next_attempt_at > now() + interval '60 seconds' AS leased
               FROM pending_platform_leads"""
        )
        assert (row["attempts"], row["leased"]) == (1, True)

        await intake.pool.execute("UPDATE pending_platform_leads SET next_attempt_at = now()")
        assert await fetcher.fetch_due() == 1  # the lease ended: fetched and captured

    assert open_while_fetching == [0]
    assert await intake.count("pending_platform_leads") == 0
    assert await intake.count("leads") == 1


async def test_a_meta_lead_that_used_up_its_attempts_is_parked_until_the_limit_is_raised(
    intake: Intake, graph: tuple[FakeGraph, str]
) -> None:
    """After its last attempt a lead is parked (kept with its error), out of the claim's due
    range: thousands of such leads cost the claim nothing. Leads left in the due range by an
    older version are parked when a fetcher starts; a raised limit makes them due again."""
    fake, url = graph
    fake.failures = 1_000_000  # Graph keeps failing
    body = json.dumps(META_NOTICE).encode()
    signed = {"x-hub-signature-256": _hex(META_SECRET, body), "content-type": "application/json"}
    assert (await intake.client.post("/v1/webhooks/meta", content=body, headers=signed)).is_success

    def fetcher_allowing(attempts: int, client: httpx.AsyncClient) -> MetaFetcher:
        settings = IntakeSettings(
            database_url="unused",
            meta_access_token="graph-token",
            meta_graph_base_url=url,
            meta_fetch_max_attempts=attempts,
            db_schema="intake",
        )
        return MetaFetcher(intake.pool, settings, client)

    async def parked() -> int:
        return int(
            await intake.pool.fetchval(
                "SELECT count(*) FROM pending_platform_leads WHERE next_attempt_at = 'infinity'"
            )
        )

    async with httpx.AsyncClient(timeout=5) as client:
        fetcher = fetcher_allowing(2, client)
        async with fetcher.resources():
            await fetcher.apply_attempt_limit()
            for _ in (1, 2):
                assert await fetcher.fetch_due() == 1
                await intake.pool.execute(
                    "UPDATE pending_platform_leads SET next_attempt_at = now()"
                    " WHERE next_attempt_at < 'infinity'"
                )  # the backoff passes
            assert await fetcher.fetch_due() == 0
        row = await intake.pool.fetchrow("SELECT attempts, last_error FROM pending_platform_leads")
        assert (row["attempts"], row["last_error"]) == (2, "HTTPStatusError 500")
        assert await parked() == 1
        assert len(fake.requests) == 2

        # 3,000 leads that used up their attempts under an older version (still in the due
        # range) and one due lead: a fetcher's first step parks the 3,000; its claim then reads
        # the due lead alone.
        await intake.pool.execute(
            """INSERT INTO pending_platform_leads
                   (platform, external_id, form_id, notice, attempts, next_attempt_at)
               SELECT platform, 'old-' || g, form_id, notice, 2,
                      now() - interval '1 day' + g * interval '1 second'
               FROM pending_platform_leads, generate_series(1, 3000) g
               UNION ALL
               SELECT platform, 'due-now', form_id, notice, 0, now()
               FROM pending_platform_leads""",
        )
        async with fetcher.resources():
            await fetcher.apply_attempt_limit()
            assert await parked() == 3001
            async with intake.pool.acquire() as conn:

                async def claim() -> None:
                    await webhook_store.claim_due(conn, META, 10, 2, LEASE_SECONDS)

                [(query, args)] = await sent_with_args(conn, claim)
                await conn.execute(
                    "UPDATE pending_platform_leads SET next_attempt_at = now(), attempts = 0"
                    " WHERE external_id = 'due-now'"
                )
                plan = await generic_plan_as_sent(conn, query, args, analyze=True)
            read = rows_read(plan, "pending_platform_leads")
            assert read <= 4, f"the claim read {read} rows for one due lead"
        await intake.pool.execute(
            "DELETE FROM pending_platform_leads WHERE external_id LIKE 'old-%'"
            " OR external_id = 'due-now'"
        )

        # The limit raised to 3: the parked lead is due at once. Its third attempt is the
        # last: the claim parks it as it leases it, so a fetcher that dies mid-fetch leaves
        # it parked, not at the front of the due range.
        fetcher = fetcher_allowing(3, client)
        async with fetcher.resources():
            await fetcher.apply_attempt_limit()
            assert await parked() == 0
            [last] = await meta_service.claim_due_meta_leads(
                fetcher.transactions, 10, 3, LEASE_SECONDS
            )  # ... and the claimer dies here
            assert (last.attempts, last.last) == (2, True)
            assert await parked() == 1
            assert await fetcher.fetch_due() == 0

        # Raised again, Graph back: due at once, and fetched.
        fake.failures = 0
        fetcher = fetcher_allowing(4, client)
        async with fetcher.resources():
            assert await fetcher.step() == 1  # the limit applied, then fetched
            assert await parked() == 0
    assert await intake.count("pending_platform_leads") == 0
    assert await intake.count("leads") == 1


# Shaped as Typeform's documented example payload: calculated score, variables, hidden fields,
# the form's definition (fields with properties and choices, endings), answers by type with
# their field's id, type and ref, and the ending the respondent saw.
TYPEFORM_PAYLOAD = {
    "event_id": "01HNK1ZJ0RVDDTHG7G8F2YPF7R",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2026-11-01T09:30:00Z",
        "landed_at": "2026-11-01T09:28:12Z",
        "calculated": {"score": 9},
        "variables": [
            {"key": "score", "type": "number", "number": 4},
            {"key": "name", "type": "text", "text": "typeform"},
        ],
        "hidden": {"utm_source": "typeform-ad", "utm_campaign": "autumn"},
        "definition": {
            "id": "lT4Z3j",
            "title": "Webhooks example",
            "fields": [
                {
                    "id": "JwWggjAKtOkA",
                    "ref": "first_name_ref",
                    "type": "short_text",
                    "title": "Name?",
                    "properties": {},
                },
                {
                    "id": "SMEUb7VJz92Q",
                    "ref": "email_ref",
                    "type": "email",
                    "title": "Email?",
                    "properties": {},
                },
                {
                    "id": "x2Nw8BoTlG9q",
                    "ref": "phone_ref",
                    "type": "phone_number",
                    "title": "Phone?",
                    "properties": {},
                },
                {
                    "id": "k6TP9oLGgHjl",
                    "ref": "plan_ref",
                    "type": "multiple_choice",
                    "title": "Plan?",
                    "properties": {},
                    "allow_multiple_selections": False,
                    "allow_other_choice": False,
                    "choices": [
                        {"id": "Ib4wDqrzVmdg", "ref": "basic_ref", "label": "Basic"},
                        {"id": "pzR7R3WpQ1hv", "ref": "pro_ref", "label": "Pro"},
                    ],
                },
            ],
            "endings": [
                {
                    "id": "dN5FLyFpCMFo",
                    "ref": "01GRC8GR2QXXX",
                    "title": "Thank you!",
                    "type": "thankyou_screen",
                    "properties": {},
                }
            ],
        },
        "answers": [
            {
                "type": "text",
                "text": "Laura",
                "field": {"id": "JwWggjAKtOkA", "type": "short_text", "ref": "first_name_ref"},
            },
            {
                "type": "email",
                "email": "Laura@Example.com",
                "field": {"id": "SMEUb7VJz92Q", "type": "email", "ref": "email_ref"},
            },
            {
                "type": "phone_number",
                "phone_number": "+12015550123",
                "field": {"id": "x2Nw8BoTlG9q", "type": "phone_number", "ref": "phone_ref"},
            },
            {
                "type": "choice",
                "choice": {"id": "pzR7R3WpQ1hv", "ref": "pro_ref", "label": "Pro"},
                "field": {"id": "k6TP9oLGgHjl", "type": "multiple_choice", "ref": "plan_ref"},
            },
        ],
        "ending": {"id": "dN5FLyFpCMFo", "ref": "01GRC8GR2QXXX"},
    },
}


async def test_typeform_answers_are_mapped_by_ref_and_the_signature_checked(intake: Intake) -> None:
    body = json.dumps(TYPEFORM_PAYLOAD).encode()
    signature = (
        "sha256="
        + base64.b64encode(
            hmac.new(TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
        ).decode()
    )
    bad = await intake.client.post(
        "/v1/forms/typeform/webhooks/typeform",
        content=body,
        headers={"typeform-signature": "sha256=AAAA"},
    )
    ok = await intake.client.post(
        "/v1/forms/typeform/webhooks/typeform",
        content=body,
        headers={"typeform-signature": signature},
    )
    retry = await intake.client.post(
        "/v1/forms/typeform/webhooks/typeform",
        content=body,
        headers={"typeform-signature": signature},
    )

    assert bad.status_code == 401
    assert [e["field"] for e in bad.json()["errors"]] == ["Typeform-Signature"]
    assert ok.status_code == 200, ok.text
    assert retry.json()["lead_id"] == ok.json()["lead_id"]
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    person = await intake.person(event)
    assert (event.source, person.email, person.first_name, person.phone) == (
        "typeform",
        "laura@example.com",
        "Laura",
        "+12015550123",
    )
    assert person.custom_fields == {"plan": "Pro"}
    assert (event.utm.source, event.utm.campaign) == ("typeform-ad", "autumn")


GOOGLE_TEST_ID = (
    "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFf"
)
GOOGLE_PAYLOAD = {
    "lead_id": GOOGLE_TEST_ID,
    "user_column_data": [
        {
            "column_name": "Full Name",
            "string_value": "FirstName LastName",
            "column_id": "FULL_NAME",
        },
        {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
    ],
    "api_version": "1.0",
    "form_id": 40000000000,
    "campaign_id": 20000000000,
    "google_key": GOOGLE_KEY,
    "is_test": True,
    "gcl_id": GOOGLE_TEST_ID,
    "adgroup_id": 20000000000,
    "creative_id": 30000000000,
    # Newer fields of the documented schema: a receiver takes them (and may ignore them).
    "asset_group_id": 0,
    "lead_stage": "NEW",
    "lead_submit_time": "2026-11-01T09:30:00Z",
}


async def test_google_ads_leads_are_checked_by_google_key(intake: Intake) -> None:
    bad = await intake.client.post(
        "/v1/forms/google/webhooks/google-ads", json={**GOOGLE_PAYLOAD, "google_key": "nope"}
    )
    ok = await intake.client.post("/v1/forms/google/webhooks/google-ads", json=GOOGLE_PAYLOAD)

    assert bad.status_code == 401
    assert [e["field"] for e in bad.json()["errors"]] == ["google_key"]
    assert ok.status_code == 200, ok.text
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    person = await intake.person(event)
    assert (event.source, person.email, person.first_name, person.last_name, person.phone) == (
        "google-ads",
        "test@example.com",
        "FirstName",
        "LastName",
        "+16505550123",
    )
    assert event.test is True  # Google's is_test: a test lead, counted nowhere
    assert (event.utm.source, event.utm.campaign) == ("google", "20000000000")
    first = await intake.val("SELECT first_touch FROM leads WHERE id = $1", event.lead_id)
    assert first["ad_ids"] == {
        "campaign_id": "20000000000", "adgroup_id": "20000000000",
        "creative_id": "30000000000", "gcl_id": GOOGLE_TEST_ID,
    }  # fmt: skip
    assert await intake.val("SELECT is_test FROM leads WHERE id = $1", event.lead_id) is True


def _timed(secret: str, body: bytes, at: float | None = None) -> str:
    return timed_signature(secret, body, int(time.time() if at is None else at))


async def test_a_generic_hmac_webhook_maps_dotted_paths(intake: Intake) -> None:
    payload = {
        "id": "evt_1001",
        "contact": {"email": "Partner.Lead@example.com", "name": {"first": "Pat"}},
        "tracking": {"source": "partner-site"},
        "ignored": {"anything": 1},
    }
    body = json.dumps(payload).encode()
    bad = await intake.client.post(
        "/v1/forms/partner/webhooks/generic",
        content=body,
        headers={"x-funnel-signature": _timed("x", body)},
    )
    ok = await intake.client.post(
        "/v1/forms/partner/webhooks/generic",
        content=body,
        headers={"x-funnel-signature": _timed(HMAC_SECRET, body)},
    )
    broken = json.dumps({"id": "evt_1002", "contact": {"email": "not-an-email"}}).encode()
    refused = await intake.client.post(
        "/v1/forms/partner/webhooks/generic",
        content=broken,
        headers={"x-funnel-signature": _timed(HMAC_SECRET, broken)},
    )

    assert bad.status_code == 401
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["email"]
    [event] = await intake.events()
    assert isinstance(event, LeadCapturedV2)
    person = await intake.person(event)
    assert (event.source, person.email, person.first_name, event.utm.source) == (
        "webhook",
        "partner.lead@example.com",
        "Pat",
        "partner-site",
    )


def _generic_body(n: int) -> bytes:
    return json.dumps({"id": f"evt_{n}", "contact": {"email": f"signed{n}@example.com"}}).encode()


async def test_a_generic_signature_is_taken_once_within_five_minutes(intake: Intake) -> None:
    url = "/v1/forms/partner/webhooks/generic"

    async def post(body: bytes, signature: str | None) -> httpx.Response:
        headers = {} if signature is None else {"x-funnel-signature": signature}
        return await intake.client.post(url, content=body, headers=headers)

    now = time.time()
    first, second = _generic_body(1), _generic_body(2)
    signed = _timed(HMAC_SECRET, first, now)
    ok = await post(first, signed)
    replayed = await post(first, signed)
    old = await post(second, _timed(HMAC_SECRET, second, now - 301))
    # Ahead of the clock as it is when posted (the posts before may take seconds under load).
    ahead = await post(second, _timed(HMAC_SECRET, second, time.time() + 310))
    edge = await post(second, _timed(HMAC_SECRET, second, now - 290))
    missing = await post(_generic_body(3), None)
    other_body = await post(_generic_body(3), signed)  # a signature of another body
    # Re-signing the same delivery (a sender's retry) is a new signature: taken, same lead.
    retried = await post(first, _timed(HMAC_SECRET, first, now + 1))

    assert ok.status_code == 200, ok.text
    assert (replayed.status_code, replayed.json()["errors"]) == (
        401,
        [{"field": "X-Funnel-Signature", "message": "already used (a replay)"}],
    )
    assert (old.status_code, ahead.status_code) == (401, 401)
    assert old.json()["errors"][0]["message"].startswith("expired")
    assert edge.status_code == 200, edge.text
    assert (missing.status_code, other_body.status_code) == (401, 401)
    assert retried.status_code == 200
    assert retried.json()["lead_id"] == ok.json()["lead_id"]
    assert len(await intake.events()) == 2  # the first lead and the edge one; nothing else
    assert await intake.count("webhook_signatures_used") == 3


async def test_a_body_only_signature_only_where_the_form_allows_it(intake: Intake) -> None:
    url = "/v1/forms/partner/webhooks/generic"
    body = _generic_body(7)
    legacy = {"x-funnel-signature": _hex(HMAC_SECRET, body)}

    new_form = await intake.client.post(url, content=body, headers=legacy)
    allowed = await intake.client.patch(
        "/v1/forms/partner", json={"accept_body_only_signature": True}, headers=ADMIN
    )
    allowed_post = await intake.client.post(url, content=body, headers=legacy)
    bad_legacy = await intake.client.post(
        url, content=body, headers={"x-funnel-signature": _hex("wrong", body)}
    )

    assert new_form.status_code == 401
    assert new_form.json()["errors"][0]["field"] == "X-Funnel-Signature"
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["accept_body_only_signature"] is True
    assert allowed_post.status_code == 200, allowed_post.text
    assert bad_legacy.status_code == 401
    assert len(await intake.events()) == 1


def _problem(response: httpx.Response) -> tuple[int, str, Any]:
    body = response.json()
    return response.status_code, body["type"], body["errors"]


async def test_an_unknown_form_and_a_bad_key_answer_the_same_401(intake: Intake) -> None:
    """Nothing about a form (whether it exists, its payload rules) answers before the key."""
    client = intake.client
    bad_google = {**GOOGLE_PAYLOAD, "google_key": "nope"}
    google_known = await client.post("/v1/forms/google/webhooks/google-ads", json=bad_google)
    google_unknown = await client.post("/v1/forms/no-such/webhooks/google-ads", json=bad_google)
    google_garbage = await client.post(
        "/v1/forms/google/webhooks/google-ads",
        content=b'{"user_column_data": 5, "google_key": "nope"}',
        headers={"content-type": "application/json"},
    )
    google_truncated = await client.post(
        "/v1/forms/no-such/webhooks/google-ads", content=b'{"lead_id": "x", "goo'
    )
    body = _generic_body(9)
    generic_known = await client.post(
        "/v1/forms/partner/webhooks/generic",
        content=body,
        headers={"x-funnel-signature": _timed("wrong", body)},
    )
    generic_unknown = await client.post(
        "/v1/forms/no-such/webhooks/generic",
        content=body,
        headers={"x-funnel-signature": _timed("wrong", body)},
    )
    typeform_known = await client.post(
        "/v1/forms/typeform/webhooks/typeform",
        content=b"{}",
        headers={"typeform-signature": "sha256=AAAA"},
    )
    typeform_unknown = await client.post(
        "/v1/forms/no-such/webhooks/typeform",
        content=b"{}",
        headers={"typeform-signature": "sha256=AAAA"},
    )
    # Signed right for an unknown form (the service-wide secret): only now a 404.
    generic_signed_unknown = await client.post(
        "/v1/forms/no-such/webhooks/generic",
        content=body,
        headers={"x-funnel-signature": _timed(HMAC_SECRET, body)},
    )
    google_right_key_bad_payload = await client.post(
        "/v1/forms/google/webhooks/google-ads",
        content=b'{"user_column_data": 5, "google_key": "' + GOOGLE_KEY.encode() + b'"}',
    )

    google_401 = (
        401,
        "urn:funnel:problem:bad-signature",
        [{"field": "google_key", "message": "does not match"}],
    )
    assert _problem(google_known) == google_401
    assert _problem(google_unknown) == google_401
    assert _problem(google_garbage) == google_401
    assert _problem(google_truncated) == google_401
    assert _problem(generic_known) == _problem(generic_unknown)
    assert _problem(generic_known)[0] == 401
    assert _problem(typeform_known) == _problem(typeform_unknown)
    assert _problem(typeform_known)[0] == 401
    assert generic_signed_unknown.status_code == 404
    assert google_right_key_bad_payload.status_code == 422
    assert await intake.count("outbox") == 0


async def test_with_no_secret_anywhere_every_form_answers_401(fresh_dsn: str, infra: Stack) -> None:
    """No service-wide secret: a form with one of its own and an unknown form look alike."""
    async with running_intake(fresh_dsn, infra.kafka_bootstrap) as running:
        await running.create_form("own-secret", field_map={"contact.email": "email"})
        rotated = await running.client.post(
            "/v1/forms/own-secret/webhook-secrets/generic",
            json={"secret": "own-secret-value-0001"},
            headers=ADMIN,
        )
        assert rotated.status_code == 200, rotated.text
        body = _generic_body(11)
        answers = [
            await running.client.post(
                f"/v1/forms/{form_id}/webhooks/{platform}",
                content=body,
                headers={"x-funnel-signature": _timed("guess", body), "typeform-signature": "x"},
            )
            for form_id in ("own-secret", "no-such")
            for platform in ("generic", "typeform", "google-ads")
        ]
        ok = await running.client.post(
            "/v1/forms/own-secret/webhooks/generic",
            content=body,
            headers={"x-funnel-signature": _timed("own-secret-value-0001", body)},
        )

    assert [a.status_code for a in answers] == [401] * 6
    assert [_problem(a) for a in answers[:3]] == [_problem(a) for a in answers[3:]]
    assert ok.status_code == 200, ok.text
