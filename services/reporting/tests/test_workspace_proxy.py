"""The workspace pass-through: only the allow-listed calls reach a service, with the caller's
key, body type and precondition; the service's answer comes back unchanged; a service that
cannot be reached is a problem+json 503 (504 past the timeout); whoami names the key.

The other services are stood in for by an httpx transport that records what reached it (the
pass-through stores nothing: there is no database to look at)."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from funnel_servicekit.auth import hash_key
from funnel_servicekit.http_client import ReopeningClient
from funnel_servicekit.settings import ApiKeyEntry
from reporting.app import create_app
from reporting.settings import ReportingSettings

ANA = "ana-key-" + "a" * 32
ANALYST = "analyst-key-" + "b" * 32
LEAD = "0b3f5a52-7d8e-4c1e-9a39-2f7c1d0e9b11"
Handler = Callable[[httpx.Request], httpx.Response]


def _settings(**overrides: object) -> ReportingSettings:
    entry = ApiKeyEntry(
        name="ana",
        sha256=hash_key(ANA),
        scopes=frozenset({"leads:read", "leads:write", "pii:read", "reports:read"}),
    )
    values: dict[str, object] = {
        "admin_api_key": "k" * 32,
        "api_keys": [entry],
        "tracker_url": "http://tracker.test",
        "intake_url": "http://intake.test/",
        "notifier_url": "http://notifier.test",
        **overrides,
    }
    return ReportingSettings(**values)  # type: ignore[arg-type]


def _client(handler: Handler, **overrides: object) -> TestClient:
    app = create_app(_settings(**overrides))
    app.state.runtime.context = dataclasses.replace(
        app.state.runtime.context,
        upstream=ReopeningClient(transport=httpx.MockTransport(handler)),
    )
    return TestClient(app, headers={"Authorization": f"Bearer {ANA}"})


class Recorder:
    """Stands in for the services: answers `answer` and keeps every request it got."""

    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(request)
        return self.answer


def test_an_allowed_read_reaches_its_service_with_the_key_and_comes_back_unchanged() -> None:
    body = {"items": [{"lead_id": LEAD, "score": 42}], "next_after": "c1"}
    upstream = Recorder(
        httpx.Response(
            200,
            json=body,
            headers={"ETag": '"7"', "X-Internal": "secret", "Set-Cookie": "a=b"},
        )
    )
    client = _client(upstream)

    response = client.get(
        "/workspace/api/tracker/v1/leads",
        params={"funnel_id": "digital-sales", "stage": "desire", "sort": "-score", "limit": 2},
        headers={"If-Match": '"3"', "Cookie": "session=x", "X-Forwarded-For": "1.2.3.4"},
    )

    assert response.status_code == 200
    assert response.json() == body
    assert response.headers["etag"] == '"7"'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert "x-internal" not in response.headers
    assert "set-cookie" not in response.headers
    [sent] = upstream.seen
    assert sent.method == "GET"
    assert str(sent.url) == (
        "http://tracker.test/v1/leads?funnel_id=digital-sales&stage=desire&sort=-score&limit=2"
    )
    assert sent.headers["authorization"] == f"Bearer {ANA}"
    assert sent.headers["if-match"] == '"3"'
    assert "cookie" not in sent.headers
    assert "x-forwarded-for" not in sent.headers


def test_the_lead_ids_a_list_names_go_to_intake_each_in_its_own_parameter() -> None:
    """The lead list names its rows with one call, `id` repeated: every id reaches intake."""
    other = "1c4e6b63-8e9f-4d2f-8b4a-3e8d2e1f0c22"
    upstream = Recorder(httpx.Response(200, json={"items": [], "next_after": None}))
    client = _client(upstream)

    response = client.get(
        "/workspace/api/intake/v1/leads", params=[("id", LEAD), ("id", other), ("limit", 2)]
    )

    assert response.status_code == 200, response.text
    [sent] = upstream.seen
    assert str(sent.url) == f"http://intake.test/v1/leads?id={LEAD}&id={other}&limit=2"


def test_a_write_carries_its_body_and_the_services_refusal_comes_back_as_it_was() -> None:
    stale = {
        "type": "urn:funnel:problem:stale",
        "title": "Precondition failed",
        "status": 412,
        "current_stage": "action",
        "current_version": 5,
    }
    upstream = Recorder(
        httpx.Response(
            412, content=json.dumps(stale), headers={"content-type": "application/problem+json"}
        )
    )
    client = _client(upstream)
    move = {"to_stage": "action", "reason": "signed"}

    response = client.post(
        f"/workspace/api/tracker/v1/leads/{LEAD}/transitions",
        json=move,
        headers={"If-Match": '"4"'},
    )

    assert response.status_code == 412
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == stale
    [sent] = upstream.seen
    assert str(sent.url) == f"http://tracker.test/v1/leads/{LEAD}/transitions"
    assert json.loads(sent.content) == move
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["if-match"] == '"4"'


@pytest.mark.parametrize(
    ("method", "path", "service_url"),
    [
        ("PUT", f"/workspace/api/tracker/v1/leads/{LEAD}/owner", "http://tracker.test"),
        ("POST", "/workspace/api/intake/v1/activities", "http://intake.test"),
        ("GET", f"/workspace/api/intake/v1/leads/{LEAD}", "http://intake.test"),
        ("GET", "/workspace/api/notifier/v1/tasks?lead_id=x&status=open", "http://notifier.test"),
        ("PATCH", "/workspace/api/notifier/v1/tasks/42", "http://notifier.test"),
        ("GET", "/workspace/api/tracker/v1/funnels/digital-sales", "http://tracker.test"),
    ],
)
def test_each_call_the_pages_make_goes_to_its_own_service(
    method: str, path: str, service_url: str
) -> None:
    upstream = Recorder(httpx.Response(200, json={"ok": True}))
    client = _client(upstream)

    response = client.request(method, path, json={} if method != "GET" else None)

    assert response.status_code == 200, response.text
    [sent] = upstream.seen
    assert sent.method == method
    assert str(sent.url) == f"{service_url}/{path.split('/', 4)[4]}"


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("GET", "/workspace/api/reporting/v1/funnels", 404, "service"),
        ("GET", "/workspace/api/tracker/v1/funnels", 404, "path"),
        ("GET", "/workspace/api/tracker/v1/leads/not-a-uuid/journey", 404, "path"),
        ("GET", f"/workspace/api/tracker/v1/leads/{LEAD}/journey/../../../admin", 404, "path"),
        ("GET", "/workspace/api/intake/v1/forms", 404, "path"),
        ("GET", "/workspace/api/intake/v1/leads/export", 404, "path"),
        ("POST", "/workspace/api/intake/v1/leads/import", 404, "path"),
        ("PUT", f"/workspace/api/tracker/v1/leads/{LEAD}/journey", 405, "method"),
        ("GET", "/workspace/api/intake/v1/activities", 405, "method"),
        ("GET", "/workspace/api/tracker/v1/leads?funnel_id=f&debug=1", 422, "debug"),
        ("GET", "/workspace/api/notifier/v1/tasks?lead_id=x&assignee=ben", 422, "assignee"),
        ("GET", "/workspace/api/intake/v1/leads?email=a@example.com", 422, "email"),
    ],
)
def test_anything_off_the_allow_list_is_refused_naming_what_and_nothing_is_sent(
    method: str, path: str, status: int, field: str
) -> None:
    upstream = Recorder(httpx.Response(200, json={}))
    client = _client(upstream)

    response = client.request(method, path)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field
    assert upstream.seen == []


def test_without_a_key_that_may_read_leads_nothing_is_forwarded() -> None:
    upstream = Recorder(httpx.Response(200, json={}))
    reports_only = ApiKeyEntry(
        name="analyst", sha256=hash_key(ANALYST), scopes=frozenset({"reports:read"})
    )
    client = _client(upstream, api_keys=[reports_only])
    path = "/workspace/api/tracker/v1/leads"

    missing = client.get(path, headers={"Authorization": ""})
    wrong = client.get(path, headers={"Authorization": "Bearer no"})
    analyst = client.get(path, headers={"Authorization": f"Bearer {ANALYST}"})
    analyst_whoami = client.get(
        "/workspace/api/whoami", headers={"Authorization": f"Bearer {ANALYST}"}
    )

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert (analyst.status_code, analyst_whoami.status_code) == (403, 403)
    assert analyst.json()["type"] == "urn:funnel:problem:forbidden"
    assert upstream.seen == []


def test_a_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    upstream = Recorder(httpx.Response(202, json={}))
    client = _client(upstream, workspace_max_body_bytes=1024)

    response = client.post(
        "/workspace/api/intake/v1/activities", content=b"x" * 2000, headers={"content-type": "a/b"}
    )

    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"
    assert upstream.seen == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_service_that_cannot_be_reached_is_a_503_problem_with_retry_after() -> None:
    app = create_app(_settings(tracker_url=f"http://127.0.0.1:{_closed_port()}"))
    client = TestClient(app, headers={"Authorization": f"Bearer {ANA}"})

    response = client.get(f"/workspace/api/tracker/v1/leads/{LEAD}/journey")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"] == "urn:funnel:problem:dependency-unavailable"
    assert "tracker cannot be reached" in response.json()["detail"]


def test_a_service_that_does_not_answer_in_time_is_a_504_problem() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    client = _client(slow, workspace_timeout_seconds=0.5)

    response = client.get("/workspace/api/notifier/v1/tasks", params={"lead_id": LEAD})

    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "notifier did not answer within 0.5s"


def test_whoami_names_the_calling_key_and_its_scopes() -> None:
    client = _client(Recorder(httpx.Response(200)))

    ana = client.get("/workspace/api/whoami")
    admin = client.get("/workspace/api/whoami", headers={"Authorization": f"Bearer {'k' * 32}"})
    nobody = client.get("/workspace/api/whoami", headers={"Authorization": ""})

    assert ana.status_code == 200
    assert ana.json() == {
        "name": "ana",
        "scopes": ["leads:read", "leads:write", "pii:read", "reports:read"],
    }
    assert admin.json()["name"] == "admin"
    assert nobody.status_code == 401


def test_the_pages_are_served_without_a_key() -> None:
    client = TestClient(create_app(_settings()))

    for path, marker in [
        ("/dashboard/leads", "leads.js"),
        ("/dashboard/lead", "lead.js"),
        ("/dashboard/static/workspace.js", "Workspace"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert marker in response.text


def test_the_pages_allow_only_their_own_scripts_and_no_framing() -> None:
    """What a browser enforces on the pages (decision 0095): scripts from this origin only,
    calls to it only, no framing, no sniffing; the assets are never sniffed either."""
    client = TestClient(create_app(_settings()))

    for path in ("/dashboard", "/dashboard/leads", "/dashboard/lead"):
        headers = client.get(path).headers
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in headers["content-security-policy"].split(";")
        )
        assert policy["script-src"] == "'self'", path  # no inline script, no eval
        assert policy["connect-src"] == "'self'", path
        assert policy["frame-ancestors"] == "'none'", path
        assert policy["object-src"] == "'none'", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
    for asset in ("/dashboard/static/leads.js", "/dashboard/static/vendor/echarts.min.js"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["x-content-type-options"] == "nosniff", asset
