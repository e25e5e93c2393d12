"""Bad report parameters are 422 problems naming the field, decided before any I/O."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from reporting.app import create_app
from reporting.settings import ReportingSettings

KEY = "k" * 32


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Not entered as a context manager: no lifespan, so no database is needed (or reached).
    return TestClient(create_app(ReportingSettings(admin_api_key=KEY)))


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("conversion", {"tz": "Africa/Monrovia", "start": "1970-01-01", "end": "1970-01-02"}, "tz"),
        ("conversion", {"tz": "Nowhere/Special"}, "tz"),
        ("conversion", {"window_days": "10"}, "window_days"),
        ("conversion", {"start": "2026-09-02", "end": "2026-09-01"}, "start"),
        ("conversion", {"start": "yesterday"}, "start"),
        ("conversion", {"cohort": "year"}, "cohort"),
        ("conversion", {"breakdown": "email"}, "breakdown"),
        ("conversion", {"attribution": "middle"}, "attribution"),
        ("conversion", {"format": "xml"}, "format"),
        ("touch-effectiveness", {"window_days": "2"}, "window_days"),
        ("time-to-convert", {"from_stage": "A B", "to_stage": "x"}, "from_stage"),
        ("revenue", {"breakdown": "form"}, "breakdown"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(
        f"/v1/funnels/digital-sales/{path}",
        params=params,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_every_report_needs_a_key(client: TestClient) -> None:
    for path in (
        "conversion",
        "conversion-over-time",
        "time-in-stage",
        "revenue",
        "interactions-before-purchase",
        "touch-effectiveness",
    ):
        assert client.get(f"/v1/funnels/digital-sales/{path}").status_code == 401, path
    assert client.get("/v1/funnels").status_code == 401


def test_the_dashboard_page_and_its_library_are_served_without_a_key(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert '<script src="/dashboard/static/vendor/echarts.min.js">' in page.text
    library = client.get("/dashboard/static/vendor/echarts.min.js")
    assert library.status_code == 200
    assert len(library.content) > 500_000
