"""Every operation of every service's OpenAPI document: public on purpose, or guarded.

The list of operations comes from the running code, so a new endpoint that forgets its guard
fails here: without a key 401, with a key that lacks the scope 403 (both problem+json).
Auth runs before any database access, so no infrastructure is needed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from funnel_servicekit.auth import route_scopes
from lead_intake.app import create_app as intake_app
from lead_intake.settings import IntakeSettings
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from reporting.app import create_app as reporting_app
from reporting.settings import ReportingSettings
from stage_tracker.app import create_app as tracker_app
from stage_tracker.settings import TrackerSettings

ADMIN = "a" * 8 + "Zx9-Qw8_Er7-Ty6_Ui5"  # 27 characters, 14 distinct
UNSCOPED = "fk_unscoped-test-key-0123456789"
KEYS: list[Any] = [
    {
        "name": "unscoped",
        "sha256": hashlib.sha256(UNSCOPED.encode()).hexdigest(),
        "scopes": ["unrelated:scope"],
    }
]

# Public on purpose, each with its own guard (signatures, signed tokens, public form keys,
# per-form CORS and rate limits); tested in each service's own tests.
PUBLIC = {
    ("lead-intake", "POST", "/v1/forms/{form_id}/submissions"),
    ("lead-intake", "GET", "/v1/forms/{form_id}/embed.js"),
    ("lead-intake", "POST", "/v1/activities"),  # a form's public key or an internal key
    ("lead-intake", "GET", "/v1/webhooks/meta"),  # Meta's verification handshake
    ("lead-intake", "POST", "/v1/webhooks/meta"),  # X-Hub-Signature-256
    ("lead-intake", "POST", "/v1/forms/{form_id}/webhooks/typeform"),  # Typeform-Signature
    ("lead-intake", "POST", "/v1/forms/{form_id}/webhooks/google-ads"),  # google_key
    ("lead-intake", "POST", "/v1/forms/{form_id}/webhooks/generic"),  # HMAC signature
    ("notifier", "GET", "/t/u/{token}"),  # signed unsubscribe link
    ("notifier", "POST", "/t/u/{token}"),  # RFC 8058 one-click
    ("notifier", "GET", "/t/o/{token}"),  # signed open pixel
    ("notifier", "GET", "/t/c/{token}"),  # signed click redirect
}
OPERATIONS = {"/healthz", "/readyz", "/metrics"}

FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "lead-intake": lambda: intake_app(IntakeSettings(admin_api_key=ADMIN, api_keys=KEYS)),
    "stage-tracker": lambda: tracker_app(TrackerSettings(admin_api_key=ADMIN, api_keys=KEYS)),
    "notifier": lambda: notifier_app(NotifierSettings(admin_api_key=ADMIN, api_keys=KEYS)),
    "reporting": lambda: reporting_app(ReportingSettings(admin_api_key=ADMIN, api_keys=KEYS)),
}


def _required_scopes() -> dict[tuple[str, str, str], frozenset[str]]:
    """(service, METHOD, path) -> the scopes its route requires, read from the code."""
    found = {}
    for service, factory in FACTORIES.items():
        for route, scopes in route_scopes(factory()).items():
            methods, path = route.split(" ", 1)
            for method in methods.split(","):
                found[(service, method, path)] = frozenset(map(str, scopes))
    return found


REQUIRED = _required_scopes()
# A key holding exactly the scopes of each route (one key per distinct set): the right key.
RIGHT_KEYS = {
    scopes: f"fk_right_{i}_" + hashlib.sha256(str(sorted(scopes)).encode()).hexdigest()[:24]
    for i, scopes in enumerate(sorted(set(REQUIRED.values()), key=sorted))
}
KEYS += [
    {"name": f"right-{i}", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": sorted(s)}
    for i, (s, key) in enumerate(RIGHT_KEYS.items())
]
SAMPLE = {
    "form_id": "demo",
    "funnel_id": "digital-sales",
    "version": "1",
    "name": "welcome",
    "token": "x",
}


def _operations() -> list[tuple[str, str, str]]:
    found = []
    for service, factory in FACTORIES.items():
        for path, ops in factory().openapi()["paths"].items():
            found += [(service, method.upper(), path) for method in ops]
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m[1], str(uuid4())), path)


ALL = _operations()
GUARDED = [op for op in ALL if op not in PUBLIC and op[2] not in OPERATIONS]


def test_the_guarded_set_is_the_bulk_of_the_api() -> None:
    assert len(GUARDED) >= 30  # the enumeration really found the routes
    assert set(ALL) >= PUBLIC, sorted(PUBLIC - set(ALL))  # no stale public entry


def _call(service: str, method: str, path: str, headers: dict[str, str]) -> Any:
    client = TestClient(FACTORIES[service](), raise_server_exceptions=False)
    return client.request(method, _url(path), headers=headers, json={})


@pytest.mark.parametrize(("service", "method", "path"), GUARDED, ids=lambda v: str(v))
def test_without_a_key_401(service: str, method: str, path: str) -> None:
    response = _call(service, method, path, {})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("service", "method", "path"), GUARDED, ids=lambda v: str(v))
def test_with_the_right_key_the_guard_lets_it_through(service: str, method: str, path: str) -> None:
    """A key with exactly the route's scopes passes the guard (what follows, with no
    database here, may refuse the request, but not for its key)."""
    scopes = REQUIRED.get((service, method, path))
    assert scopes, f"{method} {path}: guarded, yet its route declares no scope"
    response = _call(service, method, path, {"Authorization": f"Bearer {RIGHT_KEYS[scopes]}"})
    assert response.status_code not in (401, 403), response.text


@pytest.mark.parametrize(("service", "method", "path"), GUARDED, ids=lambda v: str(v))
def test_with_a_key_missing_the_scope_403(service: str, method: str, path: str) -> None:
    response = _call(service, method, path, {"Authorization": f"Bearer {UNSCOPED}"})
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "urn:funnel:problem:forbidden"
