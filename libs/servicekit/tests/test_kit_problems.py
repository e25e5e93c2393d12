"""Every error is RFC 9457 problem+json: validation names the field, a crash leaks nothing."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from funnel_servicekit.problems import PROBLEM_JSON, Problem, install_problem_handlers


class Utm(BaseModel):
    source: str = Field(max_length=5)


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    path: str  # a field named like a FastAPI location
    utm: Utm | None = None


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/forms")
    async def forms(form: Form) -> dict[str, str]:
        return {"email": form.email}

    @app.get("/items/{item_id}")
    async def items(item_id: int, limit: int = 10) -> dict[str, int]:
        return {"item_id": item_id, "limit": limit}

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "Already exists", "form f1 exists", type_="urn:funnel:problem:conflict")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"X-Why": "tea"})

    @app.get("/database/{kind}")
    async def database(kind: str) -> None:
        errors: dict[str, Exception] = {
            "refused": ConnectionRefusedError(111, "Connection refused"),
            "starting": asyncpg.CannotConnectNowError("the database system is starting up"),
            "cut": asyncpg.ConnectionDoesNotExistError("connection was closed mid-operation"),
            "shutdown": asyncpg.AdminShutdownError("terminating connection"),
            "pool-timeout": TimeoutError(),
        }
        raise errors[kind]

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 for ada@example.com")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_422_names_the_missing_field(client: TestClient) -> None:
    response = client.post("/forms", json={"path": "/landing"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "urn:funnel:problem:validation"
    assert body["status"] == 422
    assert body["instance"] == "/forms"
    assert [e["field"] for e in body["errors"]] == ["email"]
    assert body["errors"][0]["code"] == "missing"
    assert "email: " in body["detail"]


def test_422_keeps_a_field_named_like_a_location(client: TestClient) -> None:
    response = client.post("/forms", json={"email": "a@example.com"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["path"]


def test_422_names_nested_and_unknown_fields(client: TestClient) -> None:
    response = client.post(
        "/forms",
        json={"email": "a@example.com", "path": "/", "utm": {"source": "toolong"}, "x": 1},
    )
    assert response.status_code == 422
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["utm.source", "x"]


def test_422_for_query_and_path_parameters(client: TestClient) -> None:
    response = client.get("/items/abc?limit=many")
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["item_id", "limit"]


def test_422_for_a_body_that_is_not_json(client: TestClient) -> None:
    response = client.post(
        "/forms", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"][0]["code"] == "json_invalid"


def test_problem_keeps_status_type_and_detail(client: TestClient) -> None:
    response = client.get("/conflict")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "urn:funnel:problem:conflict",
        "title": "Already exists",
        "status": 409,
        "detail": "form f1 exists",
        "instance": "/conflict",
    }


def test_http_exceptions_and_404_become_problems(client: TestClient) -> None:
    teapot = client.get("/teapot")
    assert teapot.status_code == 418
    assert teapot.headers["content-type"] == PROBLEM_JSON
    assert teapot.headers["x-why"] == "tea"
    assert teapot.json()["title"] == "short and stout"
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_JSON
    assert missing.json()["status"] == 404


def test_unexpected_exception_is_a_500_problem_that_leaks_nothing(client: TestClient) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal error",
        "status": 500,
        "instance": "/boom",
    }
    for secret in ("hunter2", "ada@example.com", "RuntimeError", "password"):
        assert secret not in response.text


@pytest.mark.parametrize("kind", ["refused", "starting", "cut", "shutdown", "pool-timeout"])
def test_an_unreachable_database_is_a_503_to_retry_not_a_500(client: TestClient, kind: str) -> None:
    response = client.get(f"/database/{kind}")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "type": "urn:funnel:problem:dependency-unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "a dependency of this service cannot be reached; retry later",
        "instance": f"/database/{kind}",
    }


def test_the_shared_answers_name_the_field_and_carry_their_headers() -> None:
    from funnel_servicekit.problems import conflict, invalid, not_found, rate_limited, unavailable

    bad = invalid("email", "not an email address")
    assert (bad.status, bad.type) == (422, "urn:funnel:problem:validation")
    assert bad.body()["errors"] == [
        {"field": "email", "message": "not an email address", "code": "value_error"}
    ]
    assert bad.body()["detail"] == "email: not an email address"
    missing = not_found("form", "form_id", "spring")
    assert (missing.status, missing.body()["errors"][0]["field"]) == (404, "form_id")
    assert missing.detail == "no form with id 'spring'"
    clash = conflict("the email belongs to another lead", field="email")
    assert (clash.status, clash.errors) == (409, [{"field": "email", "message": clash.detail}])
    slow = rate_limited("client", "10/minute", 7)
    assert (slow.status, slow.headers) == (429, {"Retry-After": "7"})
    assert slow.detail == "this client is over its limit of 10/minute; retry in 7s"
    away = unavailable(retry_after=9)
    assert (away.status, away.headers, away.type) == (
        503,
        {"Retry-After": "9"},
        "urn:funnel:problem:dependency-unavailable",
    )
