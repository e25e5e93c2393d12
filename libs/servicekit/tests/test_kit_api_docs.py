"""Each service's API docs (/docs, Swagger UI; /redoc, ReDoc) come from the service itself:
the pages name only its own files, and it serves them. FastAPI's defaults load both from a
CDN, a blank page where the browser reaches only the service. The OpenAPI they show offers
the API key ("Authorize") and names the scopes each operation's key needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from funnel_servicekit.auth import Principal, Scope, require_scopes
from funnel_servicekit.service_app import create_service_app
from funnel_servicekit.settings import ServiceSettings

router = APIRouter()


@router.get("/v1/things")
async def list_things(
    _: Annotated[Principal, Depends(require_scopes(Scope.LEADS_READ, Scope.PII_READ))],
) -> list[str]:
    """The things."""
    return []


@router.get("/v1/public")
async def public() -> list[str]:
    """Anyone may read this."""
    return []


def _client() -> TestClient:
    app = create_service_app(
        ServiceSettings(),
        context=None,
        title="Funnel test",
        description="d",
        migrations_dir=Path("."),
        routers=[router],
    )
    return TestClient(app)  # no lifespan: nothing here needs the database


def _assets(page: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', page) + re.findall(
        r"url:\s*'([^']+)'", page
    )


def test_the_api_docs_load_nothing_from_another_host() -> None:
    client = _client()
    for path, script in [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]:
        page = client.get(path)
        assert page.status_code == 200, path
        assets = _assets(page.text)
        assert any(a.endswith(script) for a in assets), (path, assets)
        assert all(a.startswith("/") for a in assets), (path, assets)  # this service only
        assert "cdn." not in page.text, path
        assert "fonts.googleapis" not in page.text, path
        for asset in assets:
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            if asset.endswith(".js"):
                assert len(answer.content) > 100_000, asset  # the real bundle, not a stub
    assert client.get("/openapi.json").json()["info"]["title"] == "Funnel test"


def test_the_docs_offer_the_key_and_name_the_scopes_each_operation_needs() -> None:
    spec = _client().get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "API key",
        "description": "An API key: `Authorization: Bearer <key>`. Each operation names the "
        "scopes its key needs.",
    }
    guarded = spec["paths"]["/v1/things"]["get"]
    assert guarded["security"] == [{"apiKey": []}]
    assert guarded["description"] == "The things.\n\n**Key scopes:** `leads:read`, `pii:read`"
    public = spec["paths"]["/v1/public"]["get"]
    assert "security" not in public
    assert public["description"] == "Anyone may read this."
