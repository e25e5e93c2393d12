"""A database role per service, on the real PostgreSQL: `migrate` runs as the schema owner
(FUNNEL_MIGRATION_DATABASE_URL) and grants the service's own role the rows of its schema
alone. The service then works (a form post stored, its event in the outbox) while that role
can neither read another service's schema nor change any schema."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from funnel_devstack.stack import SERVICE_ROLES, Stack
from funnel_servicekit.cli import migrate
from lead_intake.app import MIGRATIONS as INTAKE
from lead_intake.settings import IntakeSettings
from stage_tracker.app import MIGRATIONS as TRACKER
from stage_tracker.settings import TrackerSettings
from tests.integration.test_intake_harness import running_intake

pytestmark = pytest.mark.integration


def _on(dsn: str, database_dsn: str) -> str:
    """`dsn`'s role and password on the database of `database_dsn`."""
    return urlunsplit(urlsplit(dsn)._replace(path=urlsplit(database_dsn).path))


@pytest.fixture
async def dsns(fresh_dsn: str, infra: Stack) -> dict[str, str]:
    intake = _on(infra.service_dsn("lead-intake"), fresh_dsn)
    tracker = _on(infra.service_dsn("stage-tracker"), fresh_dsn)
    kafka = infra.kafka_bootstrap
    owner = {"migration_database_url": fresh_dsn, "kafka_bootstrap_servers": kafka}
    await migrate(IntakeSettings(database_url=intake, **owner), INTAKE)
    await migrate(TrackerSettings(database_url=tracker, **owner), TRACKER)
    return {"intake": intake, "tracker": tracker, "owner": fresh_dsn}


async def test_a_service_role_writes_its_own_rows_and_nothing_else(
    dsns: dict[str, str],
) -> None:
    conn = await asyncpg.connect(dsns["intake"], server_settings={"search_path": "intake"})
    try:
        assert await conn.fetchval("SELECT current_user") == SERVICE_ROLES["lead-intake"]
        # Its own rows: read and written.
        await conn.execute("INSERT INTO rate_limit_buckets VALUES ('k', 1, true, now(), now())")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
        denied = []
        for statement in (
            "SELECT count(*) FROM tracker.lead_states",  # another service's rows
            "INSERT INTO tracker.outbox (topic, key, value, headers, event_type)"
            " VALUES ('t', 'k', 'v', '[]', 'x')",
            "CREATE TABLE intake.sneaky (id int)",  # no DDL in its own schema
            "DROP TABLE intake.forms",
            "ALTER TABLE intake.leads ADD COLUMN x int",
            "CREATE TABLE public.sneaky (id int)",  # nor in public
            "CREATE SCHEMA sneaky",
        ):
            try:
                await conn.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                denied.append(statement)
    finally:
        await conn.close()
    assert len(denied) == 7, denied


async def test_intake_runs_on_its_own_role(dsns: dict[str, str], infra: Stack) -> None:
    async with running_intake(
        dsns["intake"], infra.kafka_bootstrap, migration_database_url=dsns["owner"]
    ) as intake:
        ready = await intake.client.get("/readyz")
        await intake.create_form("spring")
        posted = await intake.client.post(
            "/v1/forms/spring/submissions", json={"email": "least@example.com"}
        )
        assert ready.status_code == 200, ready.text
        assert posted.status_code == 202, posted.text
        assert await intake.count("leads") == 1
        assert [e.event_type for e in await intake.events()] == ["funnel.lead.captured.v2"]
        assert await intake.val("SELECT current_user") == SERVICE_ROLES["lead-intake"]
