"""Bearer API keys with scopes: 401 without or with a wrong key, 403 lacking a scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from funnel_servicekit.auth import (
    ALL_SCOPES,
    ApiKeyAuth,
    Principal,
    Scope,
    api_routes,
    check_route_scopes,
    hash_key,
    require_scopes,
    route_scopes,
)
from funnel_servicekit.problems import PROBLEM_JSON, install_problem_handlers

ADMIN_KEY = "adm-7c1f0b9a5e3d4c2b8a6f1e0d"
READER_KEY = "rdr-4b2a9c8d7e6f5a4b3c2d1e0f"
lookups: list[str] = []
Reader = Annotated[Principal, Depends(require_scopes("reports:read"))]


async def lookup(token_hash: str) -> Principal | None:
    lookups.append(token_hash)
    if token_hash == hash_key(READER_KEY):
        return Principal("reporting-dashboard", frozenset({"reports:read"}))
    return None


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    app.state.auth = ApiKeyAuth(ADMIN_KEY, lookup)
    install_problem_handlers(app)

    @app.get("/reports")
    async def reports(who: Reader) -> dict[str, str]:
        return {"who": who.name}

    @app.post("/funnels")
    async def funnels(
        who: Annotated[Principal, Depends(require_scopes("funnels:admin", "leads:write"))],
    ) -> dict[str, str]:
        return {"who": who.name}

    with TestClient(app) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_key_is_401_with_a_bearer_challenge(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.get("/reports", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["title"] == "Missing API key"
    assert response.json()["type"] == "urn:funnel:problem:unauthorized"


def test_wrong_key_is_401_and_the_lookup_sees_only_its_hash(client: TestClient) -> None:
    lookups.clear()
    response = client.get("/reports", headers=_bearer("not-a-key-of-ours"))
    assert response.status_code == 401
    assert response.json()["title"] == "Invalid API key"
    assert response.headers["www-authenticate"] == "Bearer"
    assert lookups == [hash_key("not-a-key-of-ours")]
    assert "not-a-key-of-ours" not in response.text


def test_a_prefix_of_the_admin_key_is_not_the_admin_key(client: TestClient) -> None:
    assert client.get("/reports", headers=_bearer(ADMIN_KEY[:-1])).status_code == 401
    assert client.get("/reports", headers=_bearer(ADMIN_KEY + "x")).status_code == 401


def test_key_with_the_scope_is_let_in(client: TestClient) -> None:
    response = client.get("/reports", headers=_bearer(READER_KEY))
    assert response.status_code == 200
    assert response.json() == {"who": "reporting-dashboard"}


def test_key_missing_a_scope_is_403_naming_it(client: TestClient) -> None:
    response = client.post("/funnels", headers=_bearer(READER_KEY))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "urn:funnel:problem:forbidden"
    assert body["detail"] == "this call needs funnels:admin, leads:write"


def test_admin_key_has_every_scope(client: TestClient) -> None:
    assert client.get("/reports", headers=_bearer(ADMIN_KEY)).json() == {"who": "admin"}
    assert client.post("/funnels", headers=_bearer(ADMIN_KEY)).json() == {"who": "admin"}


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    response = client.get("/reports", headers={"Authorization": f"bearer {ADMIN_KEY}"})
    assert response.status_code == 200


def test_without_an_admin_key_only_looked_up_keys_work(client: TestClient) -> None:
    app = FastAPI()
    app.state.auth = ApiKeyAuth(None, None)
    install_problem_handlers(app)

    @app.get("/reports")
    async def reports(who: Reader) -> dict[str, str]:
        return {"who": who.name}

    with TestClient(app) as bare:
        assert bare.get("/reports", headers=_bearer(ADMIN_KEY)).status_code == 401
        # An empty admin key must not turn the empty bearer token into the admin.
        assert bare.get("/reports", headers={"Authorization": "Bearer "}).status_code == 401


def test_require_scopes_publishes_its_scopes_and_admin_has_all() -> None:
    dependency = require_scopes("leads:read")
    assert dependency.required_scopes == ("leads:read",)  # type: ignore[attr-defined]
    assert {"leads:read", "leads:write", "funnels:admin", "reports:read"} <= ALL_SCOPES


def test_scopes_are_one_enum_and_a_route_with_an_unknown_scope_refuses_to_start() -> None:
    assert {s.value for s in Scope} == ALL_SCOPES
    with pytest.raises(ValueError, match="unknown scopes: leads:raed"):
        require_scopes("leads:raed")  # type: ignore[arg-type]

    def sneaked_in() -> None:
        """A dependency that claims a scope without going through require_scopes."""

    sneaked_in.required_scopes = ("reports:reed",)  # type: ignore[attr-defined]
    app = FastAPI()

    @app.get("/fine")
    async def fine(who: Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ))]) -> None:
        return None

    assert route_scopes(app) == {"GET /fine": ("leads:read",)}
    check_route_scopes(app)  # every scope known: starts

    @app.get("/typo", dependencies=[Depends(sneaked_in)])
    async def typo() -> None:
        return None

    with pytest.raises(RuntimeError, match=r"GET /typo requires unknown scopes: reports:reed"):
        check_route_scopes(app)


def test_routes_inside_included_routers_are_checked_too() -> None:
    from fastapi import APIRouter

    router = APIRouter()

    def typo_dependency() -> None:
        """Claims a scope that no key can hold."""

    typo_dependency.required_scopes = ("touches:admn",)  # type: ignore[attr-defined]

    @router.get("/inner", dependencies=[Depends(typo_dependency)])
    async def inner() -> None:
        return None

    app = FastAPI()
    app.include_router(router)
    assert [r.path for r in api_routes(app)] == ["/inner"]
    with pytest.raises(RuntimeError, match="GET /inner requires unknown scopes: touches:admn"):
        check_route_scopes(app)


def test_the_admin_key_checked_by_its_hash_alone() -> None:
    """A service given only FUNNEL_ADMIN_API_KEY_SHA256 accepts the admin key, holding none."""
    app = FastAPI()
    app.state.auth = ApiKeyAuth(None, None, admin_sha256=hash_key(ADMIN_KEY))
    install_problem_handlers(app)

    @app.get("/reports")
    async def reports(who: Reader) -> dict[str, str]:
        return {"who": who.name}

    with TestClient(app) as c:
        ok = c.get("/reports", headers=_bearer(ADMIN_KEY))
        the_hash = c.get("/reports", headers=_bearer(hash_key(ADMIN_KEY)))
        other = c.get("/reports", headers=_bearer(READER_KEY))
    assert (ok.status_code, ok.json()) == (200, {"who": "admin"})
    assert the_hash.status_code == 401  # the hash is not a key
    assert other.status_code == 401
