"""The reporting API's guard, exercised without any I/O (auth runs before the database)."""

from fastapi.testclient import TestClient

from reporting.app import create_app
from reporting.settings import ReportingSettings


def test_the_snapshot_refuses_callers_without_a_valid_key() -> None:
    client = TestClient(create_app(ReportingSettings(admin_api_key="k" * 32)))
    anonymous = client.get("/v1/funnels/digital-sales/snapshot")
    wrong = client.get(
        "/v1/funnels/digital-sales/snapshot", headers={"Authorization": "Bearer " + "x" * 32}
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["type"] == "urn:funnel:problem:unauthorized"
    assert wrong.status_code == 401


def test_a_malformed_funnel_id_is_a_422_naming_the_field() -> None:
    client = TestClient(create_app(ReportingSettings(admin_api_key="k" * 32)))
    response = client.get(
        "/v1/funnels/NOT%20VALID/snapshot", headers={"Authorization": "Bearer " + "k" * 32}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["funnel_id"]


def test_settings_default_to_port_8004_and_the_reporting_schema() -> None:
    settings = ReportingSettings()
    assert (settings.http_port, settings.db_schema, settings.service_name) == (
        8004,
        "reporting",
        "reporting",
    )
