"""Attacks on every public endpoint of the four services, as real processes on one stack.

Hostile bodies get a 4xx and store nothing (every table of the intake and notifier schemas
counted before and after); bursts get exactly the configured number through and 429 with
Retry-After for the rest; unknown origins get no CORS grant; signed links cannot be bent;
webhook playbooks cannot point at internal addresses; a CRLF name reaches the mail only as
one line. schemathesis fuzzes the public operations of notifier, stage-tracker and reporting
(lead-intake's whole document is tests/e2e/test_intake_schemathesis.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_contracts.topics import TOUCH_EVENTS
from funnel_devstack.mailbox import read_raw_messages
from funnel_devstack.stack import Stack
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks.models import timed_signature
from notifier.links import LinkSigner
from notifier.settings import DEV_LINK_KEY, NotifierSettings
from tests.conftest import start_stack, stop_stack
from tests.e2e.waiting import eventually, settled

pytestmark = pytest.mark.e2e

META_SECRET, META_TOKEN = "meta-app-secret-for-attacks", "meta-verify-token-for-attacks"
TYPEFORM_SECRET, GOOGLE_KEY = "typeform-secret-for-attacks", "google-key-for-attacks"
HMAC_SECRET = "generic-hmac-secret-for-attacks"
LINK_LIMIT = 40  # FUNNEL_TRACKING_RATE_LIMIT_PER_IP of this stack, per minute
SHOP = "https://shop.example"
SERVICES = ("lead-intake", "stage-tracker", "notifier", "reporting")


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = await start_stack(
        "security",
        FUNNEL_META_APP_SECRET=META_SECRET,
        FUNNEL_META_VERIFY_TOKEN=META_TOKEN,
        FUNNEL_TYPEFORM_SECRET=TYPEFORM_SECRET,
        FUNNEL_GOOGLE_ADS_KEY=GOOGLE_KEY,
        FUNNEL_WEBHOOK_HMAC_SECRET=HMAC_SECRET,
        FUNNEL_TRACKING_RATE_LIMIT_PER_IP=f"{LINK_LIMIT}/minute",
        # On the allow-list, yet loopback: only the address check stands in the way.
        FUNNEL_WEBHOOK_ALLOWED_HOSTS='["localhost", "127.0.0.1", "hooks.example.com"]',
    )
    try:
        yield stack
    finally:
        stop_stack(stack, "security")


def admin(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_api_key}"}


async def make_form(stack: Stack, form_id: str, **settings: Any) -> dict[str, Any]:
    body = {"id": form_id, "funnel_id": "digital-sales", "name": form_id, **settings}
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        r = await c.post("/v1/forms", json=body, headers=admin(stack))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def table_counts(stack: Stack, *schemas: str) -> dict[str, int]:
    """Rows in every table of the schemas, but the outbox and inbox (the relay deletes what it
    published and consumers record what they read, whatever the test does meanwhile) and the
    rate limits' buckets (every request is counted, refused or not: that is their job)."""
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        tables = await conn.fetch(
            """SELECT table_schema, table_name FROM information_schema.tables
               WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'
                 AND table_name NOT IN ('outbox', 'inbox', 'rate_limit_buckets')""",
            list(schemas),
        )
        counts = {}
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            counts[name] = await conn.fetchval(f"SELECT count(*) FROM {name}")  # noqa: S608
        return counts
    finally:
        await conn.close()


def assert_no_unhandled_errors(stack: Stack) -> None:
    for service in SERVICES:
        log = (stack.logs / f"{service}.log").read_text(errors="replace")
        assert "unhandled error" not in log, f"{service}: {log[-3000:]}"


# -- hostile input to lead-intake ----------------------------------------------------------

JSON_CT = {"content-type": "application/json"}
FORM_CT = {"content-type": "application/x-www-form-urlencoded"}
DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"email":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001
CHUNKED_70K = b"<70 KB sent in chunks, without a Content-Length>"
HUGE_NUMBER = b'{"email": "n@example.com", "first_name": ' + b"9" * 6000 + b"}"


async def send(c: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]) -> int:
    """The status; 413 also when the server answered it and closed before the whole body was
    sent (the client then sees the connection reset instead of the answer)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(70):
            yield b"x" * 1000

    content: Any = chunks() if body == CHUNKED_70K else body
    try:
        r = await c.post(path, content=content, headers=headers)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        return 413 if len(body) > 65536 else 0
    assert (
        r.status_code >= 500
        or r.status_code < 300
        or r.headers["content-type"].startswith("application/problem+json")
    ), (path, r.status_code, r.headers)
    return r.status_code


def _multipart(fields: list[tuple[str, bytes]], *, filename: str | None = None) -> bytes:
    parts = []
    for name, value in fields:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        parts.append(b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value)
    return b"\r\n".join(parts) + b"\r\n--B--\r\n"


def hostile_submissions() -> list[tuple[str, bytes, dict[str, str], int]]:
    """(what, body, headers, expected status) for one form's submissions endpoint."""
    j = JSON_CT
    email = "attacker@example.com"
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("oversized", b'{"email": "' + b"a" * 200_000 + b'"}', j, 413),
        ("oversized, streamed", CHUNKED_70K, j, 413),
        ("deep array", DEEP, j, 400),
        ("deep object", DEEP_OBJECT, j, 400),
        ("huge number", HUGE_NUMBER, j, 400),
        ("non-UTF-8", b'{"email": "\xff\xfe@example.com"}', j, 400),
        ("overlong UTF-8", b'{"email": "a\xc0\xafb@example.com"}', j, 400),
        ("encoded surrogate", b'{"email": "a@example.com", "first_name": "\xed\xa0\x80"}', j, 422),
        ("escaped surrogate", b'{"email": "a@example.com", "first_name": "\\udc00"}', j, 422),
        ("NUL in email", b'{"email": "a\\u0000@example.com"}', j, 422),
        ("NUL in a key", b'{"email": "a@example.com", "x\\u0000": "1"}', j, 422),
        ("CRLF header in email", json.dumps({"email": "a@b.co\r\nBcc: x@y.z"}).encode(), j, 422),
        ("SQL in email", json.dumps({"email": "x'; DROP TABLE leads;--@b.co"}).encode(), j, 422),
        ("template in email", json.dumps({"email": "{{7*7}}@${7*7}"}).encode(), j, 422),
        ("two emails", json.dumps({"email": "a@b.co, x@y.z"}).encode(), j, 422),
        ("email as object", json.dumps({"email": {"$ne": None}}).encode(), j, 422),
        ("email as list", json.dumps({"email": [email, "x@y.z"]}).encode(), j, 422),
        ("unknown field", json.dumps({"email": email, "is_admin": True}).encode(), j, 422),
        ("name as object", json.dumps({"email": email, "first_name": {"a": 1}}).encode(), j, 422),
        ("array body", b"[]", j, 422),
        ("string body", b'"x"', j, 422),
        ("empty", b"", j, 400),
        ("not JSON", b"{'email': 1}", j, 400),
        ("text/plain", b"email=a@b.co", {"content-type": "text/plain"}, 415),
        ("xml", b"<email>a@b.co</email>", {"content-type": "application/xml"}, 415),
        ("form: non-UTF-8", b"email=\xff@b.co", FORM_CT, 400),
        ("form: NUL", b"email=a%00@b.co", FORM_CT, 422),
        ("form: CRLF", b"email=a%40b.co%0D%0ABcc%3A+x%40y.z", FORM_CT, 422),
        ("form: repeated", b"email=a%40b.co&email=x%40y.z", FORM_CT, 422),
        ("form: 5000 fields", b"&".join(b"f%d=1" % i for i in range(5000)), FORM_CT, 400),
        (
            "multipart file",
            _multipart([("email", b"a@b.co")], filename="x.php"),
            {"content-type": "multipart/form-data; boundary=B"},
            422,
        ),
        (
            "multipart non-UTF-8 email",
            _multipart([("email", b"\xff\xfe")]),
            {"content-type": "multipart/form-data; boundary=B"},
            422,
        ),
        ("multipart, no boundary", b"--B--", {"content-type": "multipart/form-data"}, 400),
    ]
    return cases


async def test_hostile_posts_get_4xx_and_store_nothing(stack: Stack) -> None:
    form = await make_form(
        stack,
        "attack",
        allowed_origins=[SHOP],
        rate_limit_per_ip="unlimited",
        rate_limit_per_form="unlimited",
        field_map={"lead.email": "email", "lead.name": "first_name"},
    )
    before = await table_counts(stack, "intake", "notifier")
    got: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        for what, body, headers, _ in hostile_submissions():
            got[what] = await send(c, "/v1/forms/attack/submissions", body, headers)
        for what, body, headers, _ in _hostile_activities(form["public_key"]):
            path = f"/v1/activities?key={form['public_key']}"
            got[f"activities: {what}"] = await send(c, path, body, headers)
        for what, path, body, headers, _ in _hostile_webhooks():
            got[f"webhook: {what}"] = await send(c, path, body, headers)
        for what, params, expected in _meta_handshakes():
            r = await c.get("/v1/webhooks/meta", params=params)
            assert r.status_code == expected, (what, r.status_code, r.text[:300])
        for path in (
            "/v1/forms/..%2F..%2Fetc%2Fpasswd/embed.js",
            "/v1/forms/NOPE/embed.js",
            "/v1/forms/attack%00/embed.js",
            "/v1/forms/" + "a" * 5000 + "/embed.js",
        ):
            r = await c.get(path)
            assert 400 <= r.status_code < 500, (path, r.status_code)
    expected = {what: status for what, _, _, status in hostile_submissions()}
    expected |= {f"activities: {w}": st for w, _, _, st in _hostile_activities("k")}
    expected |= {f"webhook: {w}": st for w, _, _, _, st in _hostile_webhooks()}
    assert got == expected  # every case at once, so one run shows every surprise
    assert await table_counts(stack, "intake", "notifier") == before
    assert len(got) >= 60
    assert_no_unhandled_errors(stack)


def _hostile_activities(public_key: str) -> list[tuple[str, bytes, dict[str, str], int]]:
    at = "2026-11-26T10:00:00Z"
    one = {"type": "page_view", "occurred_at": at, "visitor_id": "visitor-attack-1"}
    return [
        ("deep", DEEP, JSON_CT, 400),
        ("huge number", b'{"activities": [' + b"9" * 6000 + b"]}", JSON_CT, 400),
        ("non-UTF-8", b'{"activities": ["\xff"]}', JSON_CT, 400),
        ("NUL", json.dumps({"activities": [{**one, "page_url": "h\x00"}]}).encode(), JSON_CT, 422),
        (
            "lead by email",
            json.dumps({"activities": [{**one, "email": "a@b.co"}]}).encode(),
            JSON_CT,
            422,
        ),
        (
            "lead by id",
            json.dumps({"activities": [{**one, "lead_id": str(uuid4())}]}).encode(),
            JSON_CT,
            422,
        ),
        (
            "amount overflow",
            json.dumps(
                {
                    "activities": [
                        {
                            **one,
                            "type": "purchase_completed",
                            "amount": 1e308 * 10,
                            "currency": "EUR",
                            "order_id": "o",
                        }
                    ]
                }
            ).encode(),
            JSON_CT,
            422,
        ),
        ("huge batch", json.dumps({"activities": [one] * 501}).encode(), JSON_CT, 422),
        ("wrong type", json.dumps({"activities": "all"}).encode(), JSON_CT, 422),
        (
            "SQL type",
            json.dumps({"activities": [{**one, "type": "x'; DROP TABLE activities;--"}]}).encode(),
            JSON_CT,
            422,
        ),
        ("oversized", b'{"activities": ["' + b"a" * 1_100_000 + b'"]}', JSON_CT, 413),
        ("form body", b"type=page_view", FORM_CT, 415),
    ]


def _signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _timed(secret: str, body: bytes) -> str:
    return timed_signature(secret, body, int(time.time()))


def _typeform_signed(body: bytes) -> str:
    digest = hmac.new(TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def _hostile_webhooks() -> list[tuple[str, str, bytes, dict[str, str], int]]:
    """Unsigned and badly signed deliveries (401), and signed ones of a hostile shape."""
    meta, typeform = "/v1/webhooks/meta", "/v1/forms/attack/webhooks/typeform"
    google, generic = "/v1/forms/attack/webhooks/google-ads", "/v1/forms/attack/webhooks/generic"
    lead = json.dumps(
        {
            "object": "page",
            "entry": [{"changes": [{"field": "leadgen", "value": {"leadgen_id": "1"}}]}],
        }
    ).encode()
    bad_shapes = [
        b'{"object": "page", "entry": ["x"]}',
        b'{"object": "page", "entry": 5}',
        b'{"object": "page", "entry": [{"changes": "leadgen"}]}',
    ]
    cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
        ("meta unsigned", meta, lead, JSON_CT, 401),
        (
            "meta wrong signature",
            meta,
            lead,
            {**JSON_CT, "x-hub-signature-256": _signed("x", lead)},
            401,
        ),
        ("meta CRLF signature", meta, lead, {**JSON_CT, "x-hub-signature-256": "sha256=00 x"}, 401),
        ("meta deep, signed", meta, DEEP, {"x-hub-signature-256": _signed(META_SECRET, DEEP)}, 400),
        (
            "meta huge, signed",
            meta,
            HUGE_NUMBER,
            {"x-hub-signature-256": _signed(META_SECRET, HUGE_NUMBER)},
            400,
        ),
        ("meta oversized", meta, b"x" * 70_000, {}, 413),
        ("typeform unsigned", typeform, b"{}", JSON_CT, 401),
        (
            "typeform hex signature",
            typeform,
            b"{}",
            {"typeform-signature": _signed(TYPEFORM_SECRET, b"{}")},
            401,
        ),
        (
            "typeform answers not a list",
            typeform,
            b'{"event_type": "form_response", "form_response": {"token": "t", "answers": true}}',
            {},
            422,
        ),
        (
            "typeform field not an object",
            typeform,
            json.dumps(
                {
                    "event_type": "form_response",
                    "form_response": {
                        "token": "t",
                        "answers": [
                            {"type": "email", "email": "a@b.co\r\nBcc: x@y.z", "field": "x"}
                        ],
                    },
                }
            ).encode(),
            {},
            422,
        ),
        (
            "google wrong key",
            google,
            json.dumps({"lead_id": "g", "user_column_data": [], "google_key": "nope"}).encode(),
            {},
            401,
        ),
        (
            "google key as object",
            google,
            json.dumps(
                {"lead_id": "g", "user_column_data": [], "google_key": {"$gt": ""}}
            ).encode(),
            {},
            401,
        ),
        # The key is read before the payload is judged: a body it cannot be read from is a 401.
        ("google deep", google, DEEP, {}, 401),
        ("generic unsigned", generic, b"{}", {}, 401),
        ("generic signed with SHA-1 shape", generic, b"{}", {"x-funnel-signature": "sha1=00"}, 401),
        (
            "generic deep, signed",
            generic,
            DEEP,
            {"x-funnel-signature": _timed(HMAC_SECRET, DEEP)},
            400,
        ),
        (
            "generic CRLF email, signed",
            generic,
            b'{"id": "1", "lead": {"email": "a@b.co\\r\\nBcc: x@y.z"}}',
            {},
            422,
        ),
    ]
    for body in bad_shapes:
        cases.append(
            ("meta bad shape", meta, body, {"x-hub-signature-256": _signed(META_SECRET, body)}, 422)
        )
    signed: list[tuple[str, str, bytes, dict[str, str], int]] = []
    for what, path, body, headers, status in cases:
        if path == typeform and status == 422:
            headers = {**headers, "typeform-signature": _typeform_signed(body)}
        if path == generic and what.endswith(", signed") and "x-funnel-signature" not in headers:
            headers = {**headers, "x-funnel-signature": _timed(HMAC_SECRET, body)}
        signed.append((what, path, body, headers, status))
    return signed


def _meta_handshakes() -> list[tuple[str, dict[str, str], int]]:
    ok = {"hub.mode": "subscribe", "hub.verify_token": META_TOKEN, "hub.challenge": "c"}
    return [
        ("wrong token", {**ok, "hub.verify_token": "guess"}, 401),
        ("token with CRLF", {**ok, "hub.verify_token": META_TOKEN + "\r\nX: y"}, 401),
        ("no challenge", {"hub.mode": "subscribe", "hub.verify_token": META_TOKEN}, 422),
        ("oversized challenge", {**ok, "hub.challenge": "c" * 5000}, 422),
        ("wrong mode", {**ok, "hub.mode": "unsubscribe"}, 422),
    ]


async def test_the_meta_handshake_echoes_only_as_plain_text(stack: Stack) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": META_TOKEN,
        "hub.challenge": "<script>alert(1)</script>",
    }
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        r = await c.get("/v1/webhooks/meta", params=params)
    assert r.status_code == 200
    assert r.text == params["hub.challenge"]
    assert r.headers["content-type"].startswith("text/plain")


# -- rate limits under a burst -------------------------------------------------------------


async def _burst(
    stack: Stack, form_id: str, n: int, ip_of: Any
) -> tuple[list[httpx.Response], list[str]]:
    emails = [f"burst-{form_id}-{i}@example.com" for i in range(n)]
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=60) as c:
        responses = await asyncio.gather(
            *(
                c.post(
                    f"/v1/forms/{form_id}/submissions",
                    json={"email": e},
                    headers={"X-Forwarded-For": ip_of(i)},
                )
                for i, e in enumerate(emails)
            )
        )
    return list(responses), emails


async def _stored_emails(stack: Stack, form_id: str) -> set[str]:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        rows = await conn.fetch(
            """SELECT l.id, l.email FROM intake.submissions s JOIN intake.leads l
               ON l.id = s.lead_id WHERE s.form_id = $1""",
            form_id,
        )
        return {str(r["id"]) for r in rows}
    finally:
        await conn.close()


# Intake's in-flight cap (FUNNEL_HTTP_MAX_IN_FLIGHT, its default): a burst larger than this
# meets load shedding (503) before the rate limiter. The burst is not intake's only client: the
# notifier's contact resolver asks intake for data keys as soon as the first accepted leads
# reach it, up to FUNNEL_CONTACT_KEY_REQUESTS at once, and those requests hold slots too.
INTAKE_MAX_IN_FLIGHT = IntakeSettings.model_fields["http_max_in_flight"].default
OTHER_INTAKE_CLIENTS = NotifierSettings.model_fields["contact_key_requests"].default


def _check_burst(responses: list[httpx.Response], allowed: int) -> list[str]:
    statuses = [r.status_code for r in responses]
    # Exactly the limit gets in; every other request is refused with a time to come back:
    # 429 from the rate limiter, or 503 when it arrived while the cap was full. At least the
    # first INTAKE_MAX_IN_FLIGHT requests, less the slots the notifier's calls may hold, reach
    # the limiter, so few can be shed.
    assert statuses.count(202) == allowed, statuses
    assert set(statuses) <= {202, 429, 503}, statuses
    reach_the_limiter = min(len(responses), INTAKE_MAX_IN_FLIGHT - OTHER_INTAKE_CLIENTS)
    assert statuses.count(503) <= len(responses) - reach_the_limiter, statuses
    assert statuses.count(429) >= reach_the_limiter - allowed, statuses
    for r in responses:
        if r.status_code in (429, 503):
            assert int(r.headers["retry-after"]) >= 1
        if r.status_code == 429:
            assert r.json()["type"] == "urn:funnel:problem:rate-limited"
    return [r.json()["lead_id"] for r in responses if r.status_code == 202]


async def test_a_burst_from_one_ip_gets_exactly_the_per_ip_limit(stack: Stack) -> None:
    await make_form(
        stack, "burst-ip", rate_limit_per_ip="5/minute", rate_limit_per_form="unlimited"
    )
    responses, _ = await _burst(stack, "burst-ip", 40, lambda i: "203.0.113.7")
    accepted = _check_burst(responses, 5)
    assert await _stored_emails(stack, "burst-ip") == set(accepted)  # none lost, none extra
    # Another address still gets through: the limit is per IP.
    more, _ = await _burst(stack, "burst-ip", 1, lambda i: "203.0.113.8")
    assert [r.status_code for r in more] == [202]


async def test_a_burst_to_one_form_gets_exactly_the_per_form_limit(stack: Stack) -> None:
    await make_form(
        stack, "burst-form", rate_limit_per_ip="unlimited", rate_limit_per_form="7/minute"
    )
    responses, _ = await _burst(stack, "burst-form", 40, lambda i: f"198.51.100.{i + 1}")
    accepted = _check_burst(responses, 7)
    assert await _stored_emails(stack, "burst-form") == set(accepted)


async def test_activity_beacons_are_limited_per_ip(stack: Stack) -> None:
    form = await make_form(
        stack, "burst-beacon", rate_limit_per_ip="4/minute", rate_limit_per_form="unlimited"
    )
    one = {"type": "page_view", "occurred_at": "2026-11-26T10:00:00Z"}
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=60) as c:
        responses = await asyncio.gather(
            *(
                c.post(
                    f"/v1/activities?key={form['public_key']}",
                    json={"activities": [{**one, "visitor_id": f"burst-visitor-{i:04d}"}]},
                    headers={"X-Forwarded-For": "203.0.113.44"},
                )
                for i in range(20)
            )
        )
    assert sorted(r.status_code for r in responses) == [202] * 4 + [429] * 16


# -- CORS ------------------------------------------------------------------------------------

FOREIGN_ORIGINS = [
    "https://evil.example",
    "https://shop.example.evil.example",
    "https://evilshop.example",
    "http://shop.example",
    "https://shop.example:8443",
    "null",
    "https://shop.example\r\nX-Injected: 1",
]


async def test_unknown_origins_get_no_cors_grant_and_store_nothing(stack: Stack) -> None:
    form = await make_form(stack, "cors", allowed_origins=[SHOP], rate_limit_per_ip="unlimited")
    before = await table_counts(stack, "intake")
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        ok = await c.options(
            "/v1/forms/cors/submissions",
            headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
        )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == SHOP
        beacon_ok = await c.options(
            f"/v1/activities?key={form['public_key']}",
            headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
        )
        assert beacon_ok.status_code == 204
        assert beacon_ok.headers["access-control-allow-origin"] == SHOP
        for origin in FOREIGN_ORIGINS:
            if "\r" in origin:
                continue  # httpx refuses to send it; the server never sees such a header
            pre = await c.options(
                "/v1/forms/cors/submissions",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            assert pre.status_code == 403, (origin, pre.status_code)
            assert "access-control-allow-origin" not in pre.headers, origin
            beacon_pre = await c.options(
                f"/v1/activities?key={form['public_key']}",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            assert beacon_pre.status_code == 403, (origin, beacon_pre.status_code)
            assert "access-control-allow-origin" not in beacon_pre.headers, origin
            post = await c.post(
                "/v1/forms/cors/submissions",
                json={"email": "cors-victim@example.com"},
                headers={"Origin": origin},
            )
            assert post.status_code == 403, (origin, post.status_code)
            assert "access-control-allow-origin" not in post.headers, origin
            beacon = await c.post(
                f"/v1/activities?key={form['public_key']}",
                json={
                    "activities": [
                        {
                            "type": "page_view",
                            "occurred_at": "2026-11-26T10:00:00Z",
                            "visitor_id": "cors-visitor-1",
                        }
                    ]
                },
                headers={"Origin": origin},
            )
            assert beacon.status_code == 403, (origin, beacon.status_code)
            assert "access-control-allow-origin" not in beacon.headers, origin
    assert await table_counts(stack, "intake") == before


# -- mail headers, signed links and the notifier's public endpoints -----------------------


async def _welcome_mail(stack: Stack, address: str) -> bytes:
    async def find() -> bytes | None:
        for raw in read_raw_messages(stack.mail_dir)[0]:
            if address.encode() in raw:
                return raw
        return None

    raw = await eventually(find, lambda r: r is not None, timeout=60)
    assert raw is not None, f"no mail to {address}"
    return raw


async def test_a_crlf_and_template_shaped_name_reaches_the_mail_as_inert_text(
    stack: Stack,
) -> None:
    address = f"crlf-{uuid4().hex[:8]}@example.com"
    name = "{{7*7}}${7*7}\r\nBcc: stolen@evil.example\r\n\r\n<b>x</b>"
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        r = await c.post(
            "/v1/forms/demo/submissions",
            json={"email": address, "first_name": name},
            headers={"X-Forwarded-For": "192.0.2.50"},
        )
    assert r.status_code == 202, r.text
    raw = await _welcome_mail(stack, address)
    head, _, _body = raw.partition(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n")
    header_names = [
        line.split(b":")[0].lower()
        for line in re.split(rb"\r?\n", head)
        if line[:1] not in (b" ", b"\t")
    ]
    assert b"bcc" not in header_names
    assert header_names.count(b"to") == 1
    assert b"stolen@evil.example" not in head
    text = raw.decode("utf-8", "replace")
    # Not evaluated: both template forms arrive as written, and no 49 stands alone (ids,
    # signatures and boundaries hold digits, so only a 49 outside any token counts).
    assert "{{7*7}}" in text
    assert "${7*7}" in text
    assert not re.search(r"(?<![\w.=-])49(?![\w.=-])", re.sub(r"Date:.*", "", text))
    assert "<b>x</b>" not in text.split("text/html", 1)[-1]  # escaped in the HTML part


async def _touch_of(stack: Stack, address: str) -> tuple[UUID, UUID]:
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        row = await conn.fetchrow(
            """SELECT t.id, t.lead_id FROM notifier.touches t
               JOIN notifier.contacts c ON c.lead_id = t.lead_id
               WHERE c.email = $1 AND t.status = 'sent' LIMIT 1""",
            address,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["id"], row["lead_id"]


async def touch_events_about(stack: Stack, touch: UUID) -> dict[str, int]:
    """How many of each event type on the touch topic name this touch (read from offset 0)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOUCH_EVENTS, p) for p in range(stack.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        counts: Counter[str] = Counter()
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if str(touch).encode() in (r.value or b""):
                        kind = dict(r.headers or ()).get("ce_type", b"").decode()
                        counts[kind] += 1
        return dict(counts)
    finally:
        await consumer.stop()


async def _contacts_resolved(stack: Stack, timeout: float = 60) -> None:
    """Wait until the notifier's contact resolver has nothing due (it stores contacts in the
    background, off the event path)."""
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while await conn.fetchval(
            """SELECT count(*) FROM notifier.pending_contacts
               WHERE next_try_at < now() + interval '1 hour'"""
        ):
            assert asyncio.get_running_loop().time() < deadline, "contacts still pending"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_signed_links_cannot_be_bent_and_replays_count_once(stack: Stack) -> None:
    address = f"links-{uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=stack.url("lead-intake"), timeout=30) as c:
        r = await c.post(
            "/v1/forms/demo/submissions",
            json={"email": address},
            headers={"X-Forwarded-For": "192.0.2.51"},
        )
    assert r.status_code == 202
    await _welcome_mail(stack, address)
    touch, lead = await _touch_of(stack, address)
    signer = LinkSigner(DEV_LINK_KEY, stack.url("notifier"))
    target = "https://shop.example/offer?x=1"
    click = signer.click_url(touch, lead, target).removeprefix(stack.url("notifier"))
    pixel = signer.open_url(touch, lead).removeprefix(stack.url("notifier"))
    unsub = signer.unsubscribe_url(touch, lead, "marketing").removeprefix(stack.url("notifier"))
    foreign = LinkSigner("not-our-key-at-all-but-long-enough", stack.url("notifier"))
    forged = foreign.click_url(touch, lead, "https://evil.example/").removeprefix(
        stack.url("notifier")
    )
    other_kind = "/t/c/" + unsub.rsplit("/", 1)[1]
    await _contacts_resolved(stack)  # the resolver's own writes are not the links' doing
    before = await table_counts(stack, "notifier")
    ip = {"X-Forwarded-For": "192.0.2.60"}
    async with httpx.AsyncClient(base_url=stack.url("notifier"), timeout=30) as c:
        for bent in (
            forged,
            other_kind,
            click[:-3] + "abc",
            click.replace("/t/c/", "/t/c/x"),
            "/t/c/" + "A" * 5000,
            "/t/u/%00",
            "/t/o/..%2F..%2Fetc%2Fpasswd.gif",
        ):
            r = await c.get(bent, headers=ip)
            assert r.status_code == 404, (bent[:80], r.status_code)
            assert "location" not in r.headers
        assert await table_counts(stack, "notifier") == before
        for _ in range(3):
            r = await c.get(click, headers=ip)
            assert r.status_code == 302
            assert r.headers["location"] == target  # exactly the signed URL, nowhere else
            assert (await c.get(pixel, headers=ip)).status_code == 200
        page = await c.get(unsub, headers=ip)
        assert page.status_code == 200
        assert "<form" in page.text
        for _ in range(2):
            one_click = await c.post(
                unsub,
                content=b"List-Unsubscribe=One-Click",
                headers={**ip, "content-type": "application/x-www-form-urlencoded"},
            )
            assert one_click.status_code == 200
    after = await table_counts(stack, "notifier")
    engagements = '"notifier"."touch_engagements"'
    assert after[engagements] - before[engagements] == 2  # one open, one click: replays no-op
    counts = await settled(lambda: touch_events_about(stack, touch), quiet=2, timeout=30)
    assert counts.get("funnel.touch.clicked.v1") == 1, counts
    assert counts.get("funnel.touch.opened.v1") == 1, counts
    assert counts.get("funnel.consent.changed.v1") == 1, counts


async def test_public_links_are_rate_limited_per_ip(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("notifier"), timeout=30) as c:
        responses = await asyncio.gather(
            *(
                c.get(f"/t/o/guess-{i}.gif", headers={"X-Forwarded-For": "198.18.0.9"})
                for i in range(LINK_LIMIT + 25)
            )
        )
        other_ip = await c.get("/t/o/guess.gif", headers={"X-Forwarded-For": "198.18.0.10"})
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [404] * LINK_LIMIT + [429] * 25, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    assert other_ip.status_code == 404


async def test_webhook_playbooks_cannot_point_inside(stack: Stack) -> None:
    book = {
        "trigger": {"type": "activity", "activity_types": ["demo_requested"]},
        "channel": "webhook",
        "kind": "transactional",
    }
    async with httpx.AsyncClient(base_url=stack.url("notifier"), timeout=30) as c:
        for url in (
            "http://localhost:9/hook",
            "http://127.0.0.1:9/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://hooks.example.com:99999/",
            "http://user:pw@hooks.example.com/",
            "file:///etc/passwd",
            "http://0x7f000001/",
        ):
            r = await c.put(
                "/v1/playbooks/ssrf", json={**book, "webhook": {"url": url}}, headers=admin(stack)
            )
            assert r.status_code == 422, (url, r.status_code, r.text)
            fields = [e["field"] for e in r.json()["errors"]]
            assert any(f.startswith("webhook") for f in fields), (url, fields)
        missing = await c.get("/v1/playbooks/ssrf", headers=admin(stack))
    assert missing.status_code == 404


# -- schemathesis on the other services' public operations --------------------------------


async def test_public_operations_never_answer_5xx(stack: Stack) -> None:
    """Everything without a key, three services at once: the guarded operations answer 401
    fast, the public ones (health, links, dashboard) run their real code on generated input."""
    schemathesis = str(Path(sys.executable).parent / "schemathesis")

    async def run(service: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *[schemathesis, "run", f"{stack.url(service)}/openapi.json"],
            *["--checks", "not_a_server_error", "--max-examples", "5", "--seed", "20261126"],
            *["--generation-deterministic", "--phases", "examples,coverage,fuzzing"],
            *["-H", "X-Forwarded-For: 192.0.2.99"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
        return proc.returncode or 0, out.decode(errors="replace")

    services = ("notifier", "stage-tracker", "reporting")
    results = await asyncio.gather(*(run(s) for s in services))
    for service, (code, output) in zip(services, results, strict=True):
        assert code == 0, output[-6000:]
        generated = re.search(r"(\d+) generated", output)
        assert generated is not None, output[-3000:]
        assert int(generated[1]) >= 40, output[-3000:]  # the run really exercised the API
        print(f"schemathesis {service}: {generated[1]} generated requests, no 5xx")
    assert_no_unhandled_errors(stack)


async def test_dashboard_and_health_hold_against_odd_requests(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=30) as c:
        assert (await c.get("/dashboard")).status_code == 200
        for path in (
            "/dashboard/static/../../../../etc/passwd",
            "/dashboard/static/%2e%2e/%2e%2e/pyproject.toml",
            "/dashboard/static/..%2F..%2Fapp.py",
            "/dashboard/static/%00",
        ):
            r = await c.get(path)
            assert r.status_code in (400, 404), (path, r.status_code)
            assert b"root:" not in r.content
    for service in SERVICES:
        async with httpx.AsyncClient(base_url=stack.url(service), timeout=30) as c:
            for method in ("POST", "PUT", "DELETE"):
                r = await c.request(method, "/healthz", content=b"x" * 100_000)
                assert r.status_code == 405, (service, method, r.status_code)
            r = await c.get("/readyz", headers={"Host": "evil.example\r\n"[:12]})
            assert r.status_code < 500
