"""The attack suite of lead-intake's public routes, generated from its OpenAPI document and
run on the real PostgreSQL and Kafka (the service in-process):

- every public POST route (the auth matrix's PUBLIC list, checked against the OpenAPI
  document, so a new public route joins by itself) gets oversized, truncated and malformed
  bodies: each answer is a 4xx problem+json, never a 5xx, and nothing is stored;
- every webhook gets its signature missing, wrong, replayed and (where it signs a time)
  expired, and an unknown form with a bad signature answers exactly like a known one.

Each case is counted; the totals are printed (docs/reliability.md has them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from funnel_devstack.stack import Stack
from lead_intake.app import create_app
from lead_intake.settings import IntakeSettings
from lead_intake.webhooks.models import timed_signature
from tests.integration.notifier_harness import notifier_harness
from tests.integration.test_intake_harness import ADMIN, Intake, running_intake
from tests.security.test_auth_matrix import PUBLIC

pytestmark = pytest.mark.integration

META_SECRET = "attack-meta-secret-0123456789"
TYPEFORM_SECRET = "attack-typeform-secret"
GOOGLE_KEY = "attack-google-key-987"
HMAC_SECRET = "attack-generic-secret"
MAX_BODY = 16 * 1024
SAMPLE = {"form_id": "attack"}


def _openapi_posts() -> set[str]:
    app = create_app(IntakeSettings(admin_api_key="x" * 32))
    return {p for p, ops in app.openapi()["paths"].items() if "post" in ops}


PUBLIC_POSTS = sorted(p for s, m, p in PUBLIC if s == "lead-intake" and m == "POST")
WEBHOOKS = [p for p in PUBLIC_POSTS if "/webhooks/" in p]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m[1]], path)


def test_the_public_routes_come_from_the_code() -> None:
    assert set(PUBLIC_POSTS) <= _openapi_posts()
    assert len(PUBLIC_POSTS) >= 6 and len(WEBHOOKS) >= 4  # noqa: PT018


@pytest.fixture
async def intake(fresh_dsn: str, infra: Stack) -> AsyncIterator[Intake]:
    async with running_intake(
        fresh_dsn,
        infra.kafka_bootstrap,
        max_body_bytes=MAX_BODY,
        meta_app_secret=META_SECRET,
        meta_verify_token="attack-verify",
        meta_form_id="attack",
        typeform_secret=TYPEFORM_SECRET,
        google_ads_key=GOOGLE_KEY,
        webhook_hmac_secret=HMAC_SECRET,
        rate_limit_per_ip="unlimited",
        rate_limit_per_form="unlimited",
        webhook_rate_limit_per_ip="unlimited",
    ) as running:
        await running.create_form("attack", field_map={"contact.email": "email"})
        yield running


def _bad_bodies() -> list[tuple[str, bytes, str]]:
    """(name, body, content type): none of them a request a route can take."""
    ok = b'{"email": "attacker@example.com", "first_name": "Eve"}'
    return [
        ("oversized", b'{"email": "' + b"a" * (MAX_BODY + 10) + b'"}', "application/json"),
        ("truncated", ok[: len(ok) // 2], "application/json"),
        ("truncated to nothing", b"", "application/json"),
        ("not UTF-8", b'{"email": "\xff\xfe"}', "application/json"),
        ("a NUL in a value", b'{"email": "a\\u0000@example.com"}', "application/json"),
        ("deeply nested", b"[" * 50_000 + b"]" * 50_000, "application/json"),
        ("a huge number", b'{"email": 1e999999}', "application/json"),
        ("an array", b"[1, 2, 3]", "application/json"),
        ("a bare string", b'"hello"', "application/json"),
        ("duplicate keys", b'{"email": "a@b.co", "email": {"$ne": 1}}', "application/json"),
        ("XML", b"<lead><email>a@b.co</email></lead>", "application/xml"),
        ("urlencoded garbage", b"%%%&&&===", "application/x-www-form-urlencoded"),
        ("multipart without a boundary", b"--x\r\n", "multipart/form-data"),
    ]


def _sign(path: str, body: bytes, at: float | None = None) -> dict[str, str]:
    """The right signature for a webhook route (the body of Google's carries its key)."""
    if path.endswith("/generic"):
        return {"x-funnel-signature": timed_signature(HMAC_SECRET, body, int(at or time.time()))}
    if path.endswith("/typeform"):
        digest = hmac.new(TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
        return {"typeform-signature": "sha256=" + base64.b64encode(digest).decode()}
    if path == "/v1/webhooks/meta":
        digest = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"x-hub-signature-256": "sha256=" + digest}
    return {}


class Tally:
    def __init__(self) -> None:
        self.cases = 0
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: Callable[[], str]) -> None:
        self.cases += 1
        if not ok:
            self.failures.append(f"{name}: {detail()}")


def _is_problem(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("application/problem+json")


async def test_bad_bodies_on_every_public_route_are_4xx_and_store_nothing(
    intake: Intake,
) -> None:
    tally = Tally()
    before = await intake.count("outbox")
    for path in PUBLIC_POSTS:
        for name, body, content_type in _bad_bodies():
            for signed in (False, True) if path in WEBHOOKS else (False,):
                headers = {"content-type": content_type, **(_sign(path, body) if signed else {})}
                r = await intake.client.post(_url(path), content=body, headers=headers)
                case = f"{path} {name}{' signed' if signed else ''}"
                tally.check(
                    case,
                    400 <= r.status_code < 500 and _is_problem(r),
                    lambda r=r: f"{r.status_code} {r.text[:200]}",
                )
    tally.check("nothing stored", await intake.count("outbox") == before, lambda: "outbox grew")
    tally.check("no lead", await intake.count("leads") == 0, lambda: "a lead was made")
    print(f"attack suite, bad bodies: {tally.cases} cases, {len(tally.failures)} failures")
    assert tally.failures == []
    assert tally.cases == 1 + 1 + sum(2 if p in WEBHOOKS else 1 for p in PUBLIC_POSTS) * len(
        _bad_bodies()
    )


def _delivery(path: str, n: int) -> bytes:
    """A well-formed delivery for each webhook (lead number n)."""
    email = f"hook{n}@example.com"
    if path.endswith("/generic"):
        return json.dumps({"id": f"evt-{n}", "contact": {"email": email}}).encode()
    if path.endswith("/typeform"):
        answers = [{"type": "email", "email": email, "field": {"id": "e", "ref": "email"}}]
        return json.dumps(
            {
                "event_id": f"ev{n}",
                "event_type": "form_response",
                "form_response": {"form_id": "f", "token": f"tok{n}", "answers": answers},
            }
        ).encode()
    if path.endswith("/google-ads"):
        return json.dumps(
            {
                "lead_id": f"g-{n}",
                "google_key": GOOGLE_KEY,
                "user_column_data": [{"column_id": "EMAIL", "string_value": email}],
            }
        ).encode()
    notice = {"leadgen_id": f"9000{n}", "form_id": "1", "page_id": "2"}
    return json.dumps(
        {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": notice}]}]}
    ).encode()


def _unsigned(path: str, body: bytes) -> bytes:
    """Google's key travels in the body: the 'missing signature' is a body without it."""
    if path.endswith("/google-ads"):
        payload = json.loads(body)
        payload.pop("google_key")
        return json.dumps(payload).encode()
    return body


def _wrongly_signed(path: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    if path.endswith("/google-ads"):
        return body.replace(GOOGLE_KEY.encode(), b"guessed-key"), {}
    headers = _sign(path, body)
    name = next(iter(headers))
    return body, {name: headers[name][:-6] + "AAAAAA"}


async def test_every_webhook_refuses_missing_wrong_replayed_and_expired_signatures(
    intake: Intake,
) -> None:
    tally = Tally()
    c = intake.client
    for n, path in enumerate(WEBHOOKS):
        url = _url(path)
        body = _delivery(path, n)
        missing = await c.post(url, content=_unsigned(path, body))
        wrong_body, wrong_headers = _wrongly_signed(path, body)
        wrong = await c.post(url, content=wrong_body, headers=wrong_headers)
        for name, r in (("missing", missing), ("wrong", wrong)):
            tally.check(f"{path} {name}", r.status_code == 401 and _is_problem(r), r.text.__str__)
        if "{form_id}" in path:  # an unknown form: the very same 401
            other = await c.post(
                url.replace("/attack/", "/no-such-form/"), content=wrong_body, headers=wrong_headers
            )
            tally.check(
                f"{path} unknown form",
                (other.status_code, other.json()["errors"]) == (401, wrong.json()["errors"]),
                other.text.__str__,
            )
        headers = _sign(path, body)
        first = await c.post(url, content=body, headers=headers)
        replay = await c.post(url, content=body, headers=headers)
        tally.check(f"{path} signed", first.status_code in (200, 202), first.text.__str__)
        if path.endswith("/generic"):
            tally.check(f"{path} replayed", replay.status_code == 401, replay.text.__str__)
            old = await c.post(url, content=body, headers=_sign(path, body, time.time() - 301))
            tally.check(f"{path} expired", old.status_code == 401, old.text.__str__)
        else:  # no time signed: a replay is recognized by the platform's lead id
            tally.check(
                f"{path} replayed",
                replay.status_code == first.status_code and replay.json() != {}
                and replay.json().get("new_lead") in (None, False),
                replay.text.__str__,
            )  # fmt: skip
    captured = [e for e in await intake.events() if e.event_type.startswith("funnel.lead.")]
    tally.check("one capture per signed delivery", len(captured) == 3, lambda: str(captured))
    tally.check(
        "one Meta notice kept",
        await intake.count("pending_platform_leads") == 1,
        lambda: "pending leads",
    )
    print(f"attack suite, webhook signatures: {tally.cases} cases, {len(tally.failures)} failures")
    assert tally.failures == []


NOTIFIER_POSTS = sorted(p for s, m, p in PUBLIC if s == "notifier" and m == "POST")


async def test_bad_bodies_and_forged_tokens_on_the_notifier_s_public_posts(
    fresh_dsn: str, infra: Stack
) -> None:
    """The notifier's public POST routes (RFC 8058 one-click): any body with a forged or
    mangled token is a 4xx problem, never a 5xx, and nothing changes."""
    assert NOTIFIER_POSTS, "the auth matrix lists the notifier's public POST routes"
    tally = Tally()
    tokens = ["x", "A" * 5000, "..%2F..%2Fetc", "e30.e30.e30", "%00"]
    async with notifier_harness(fresh_dsn, infra.kafka_bootstrap) as h, h.api() as api:
        before = await h.pool.fetchval("SELECT count(*) FROM outbox")
        for path in NOTIFIER_POSTS:
            for token in tokens:
                for name, body, content_type in [
                    (
                        "one-click",
                        b"List-Unsubscribe=One-Click",
                        "application/x-www-form-urlencoded",
                    ),
                    *_bad_bodies(),
                ]:
                    r = await api.post(
                        path.replace("{token}", token),
                        content=body,
                        headers={"content-type": content_type, "authorization": ""},
                    )
                    tally.check(
                        f"{path} {token[:12]} {name}",
                        400 <= r.status_code < 500,
                        lambda r=r: f"{r.status_code} {r.text[:200]}",
                    )
        after = await h.pool.fetchval("SELECT count(*) FROM outbox")
    tally.check("nothing emitted", after == before, lambda: f"{before} -> {after}")
    print(
        f"attack suite, notifier public posts: {tally.cases} cases, {len(tally.failures)} failures"
    )
    assert tally.failures == []


async def test_the_form_admin_routes_are_not_public(intake: Intake) -> None:
    """The secrets behind the webhooks are not readable without forms:admin."""
    anonymous = await intake.client.get("/v1/forms/attack/webhook-secrets")
    admin = await intake.client.get("/v1/forms/attack/webhook-secrets", headers=ADMIN)
    assert (anonymous.status_code, admin.status_code) == (401, 200)
