"""The database roles of both overlays (docs/decisions/0044): the schemas belong to an owner
whose DSN only the migration Job holds (FUNNEL_MIGRATION_DATABASE_URL); each service's pods
connect as the service's own role, which owns nothing and is granted its schema's rows by its
`migrate`. The prod overlay's database bootstrap is then run on the real PostgreSQL, and a
service migrated as the manifests do it: its role writes its rows and can change no schema."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from funnel_servicekit.cli import migrate
from lead_intake.app import MIGRATIONS as INTAKE
from lead_intake.settings import IntakeSettings
from tests.deploy.rendering import OVERLAYS, Manifest, of_kind, render
from tests.deploy.service_catalog import SERVICES
from tests.deploy.traffic import prerequisites

OWNER_SECRET = "funnel-db-owner"
MIGRATE = "FUNNEL_MIGRATION_DATABASE_URL"


def _secret_name(name: str, overlay: str) -> str:
    """The Secret's name as written in the overlay (dev: generated, `<name>-<hash>`)."""
    return name.rsplit("-", 1)[0] if overlay == "dev" else name


def _secret_values(overlay: str, manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    """Every Secret's keys and values: the ones the overlay makes (dev), else the examples
    of prerequisites.yaml (prod)."""
    found: dict[str, dict[str, str]] = {}
    for m in of_kind(manifests, "Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (m.get("data") or {}).items()}
        found[_secret_name(m["metadata"]["name"], overlay)] = data | (m.get("stringData") or {})
    for name, keys in prerequisites(overlay).items():
        found.setdefault(name, {k: str(v) for k, v in keys.items()})
    return found


def _env_ref(container: dict[str, Any], name: str) -> tuple[str, str] | None:
    for e in container.get("env", []):
        if e["name"] == name and "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            return ref["name"], ref["key"]
    return None


def _user(dsn: str) -> str:
    return urlsplit(dsn).username or ""


def _migrate_job(manifests: list[Manifest]) -> dict[str, Any]:
    [job] = [j for j in of_kind(manifests, "Job") if j["metadata"]["name"] == "funnel-migrate"]
    return job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_migration_job_holds_the_owner_and_migrates_as_it(overlay: str) -> None:
    manifests = render(overlay)
    secrets = _secret_values(overlay, manifests)
    owner_dsn = secrets[OWNER_SECRET]["database-uri"]
    pod = _migrate_job(manifests)["spec"]["template"]["spec"]
    migrations = [
        c
        for c in [*pod.get("initContainers", []), *pod["containers"]]
        if c.get("args", [])[-1:] == ["migrate"]
    ]
    assert {c["name"] for c in migrations} == set(SERVICES), overlay
    for container in migrations:
        service = container["name"]
        owner = _env_ref(container, MIGRATE)
        assert owner is not None, (overlay, service)
        assert (_secret_name(owner[0], overlay), owner[1]) == (OWNER_SECRET, "database-uri")
        runtime = _env_ref(container, "FUNNEL_DATABASE_URL")
        assert runtime is not None, (overlay, service)
        assert _secret_name(runtime[0], overlay) == f"funnel-{service}"
        service_dsn = secrets[f"funnel-{service}"][runtime[1]]
        # Another role than the owner: migrate grants it the rows of its schema alone.
        assert _user(service_dsn) != _user(owner_dsn), (overlay, service)
    # Four services, four roles.
    users = {_user(secrets[f"funnel-{s}"]["database-uri"]) for s in SERVICES}
    assert len(users) == len(SERVICES), users
    # No service's pod holds the owner's DSN, nor reads its Secret.
    for deployment in of_kind(manifests, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            names = {e["name"] for e in container.get("env", [])}
            assert MIGRATE not in names, deployment["metadata"]["name"]
            read = {
                _secret_name(e["valueFrom"]["secretKeyRef"]["name"], overlay)
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            assert OWNER_SECRET not in read, deployment["metadata"]["name"]


def test_dev_makes_each_service_role_with_the_password_of_its_dsn_before_migrating() -> None:
    manifests = render("dev")
    secrets = _secret_values("dev", manifests)
    pod = _migrate_job(manifests)["spec"]["template"]["spec"]
    first, *_ = pod["initContainers"]
    assert first["name"] == "db-roles"
    assert first["args"][:3] == ["python", "-m", "funnel_servicekit.roles"]
    env = {}
    for e in first["env"]:
        ref = e["valueFrom"]["secretKeyRef"]
        env[e["name"]] = secrets[_secret_name(ref["name"], "dev")][ref["key"]]
    made = {}
    for pair in first["args"][3:]:
        role, value = pair.split("=", 1)
        made[role] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
    wanted = {}
    for service in SERVICES:
        dsn = urlsplit(secrets[f"funnel-{service}"]["database-uri"])
        wanted[dsn.username] = dsn.password
    assert made == wanted
    assert _user(env[MIGRATE]) not in made  # the owner is not one of them


def test_prod_schemas_belong_to_the_owner_and_the_services_roles_own_nothing() -> None:
    manifests = render("prod")
    secrets = _secret_values("prod", manifests)
    [cluster] = of_kind(manifests, "Cluster")
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    owner = initdb["owner"]
    assert initdb["secret"] == {"name": OWNER_SECRET}
    assert secrets[OWNER_SECRET]["username"] == owner
    assert _user(secrets[OWNER_SECRET]["database-uri"]) == owner
    roles = {r["name"] for r in cluster["spec"]["managed"]["roles"]}
    assert owner not in roles
    sql = initdb["postInitApplicationSQL"]
    for service in SERVICES:
        role = _user(secrets[f"funnel-{service}"]["database-uri"])
        assert role in roles, service
        assert not any(re.search(rf"AUTHORIZATION {role}\b", s) for s in sql), role
    schemas = {s.settings.model_fields["db_schema"].default for s in SERVICES.values()}
    for schema in schemas:
        assert f"CREATE SCHEMA {schema} AUTHORIZATION {owner}" in sql
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in sql


def _as(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.mark.integration
async def test_prod_bootstrap_on_postgresql_then_intake_migrated_as_the_job_does(
    fresh_dsn: str,
) -> None:
    """The prod Cluster's bootstrap SQL as CloudNativePG runs it (as the owner, in the
    database), the managed roles' logins, then intake's migrate with the owner's and the
    service's DSNs: the service's role works its rows, owns nothing, changes no schema."""
    [cluster] = of_kind(render("prod"), "Cluster")
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    roles = [r["name"] for r in cluster["spec"]["managed"]["roles"]]
    assert _user(fresh_dsn) == initdb["owner"]  # the test server's owner is `funnel` too
    conn = await asyncpg.connect(fresh_dsn)
    try:
        for role in roles:  # left by an earlier run on this server (roles are per server)
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"DROP ROLE {role}")
        for statement in initdb["postInitApplicationSQL"]:
            await conn.execute(statement)
        for role in roles:  # what the managed roles add: a login and a password
            await conn.execute(f"ALTER ROLE {role} LOGIN PASSWORD '{role}-pw'")
    finally:
        await conn.close()
    intake_dsn = _as(fresh_dsn, "intake", "intake-pw")
    try:
        await migrate(
            IntakeSettings(database_url=intake_dsn, migration_database_url=fresh_dsn), INTAKE
        )
        app = await asyncpg.connect(intake_dsn)
        try:
            assert await app.fetchval("SHOW search_path") == "intake, public"
            assert await app.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            assert await app.fetchval("SHOW random_page_cost") == "1.1"
            await app.execute("INSERT INTO rate_limit_buckets VALUES ('k', 1, true, now(), now())")
            assert await app.fetchval("SELECT count(*) FROM schema_migrations") > 0
            owned = await app.fetchval(
                """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relowner = 'intake'::regrole
                      OR n.nspowner = 'intake'::regrole"""
            )
            assert owned == 0
            denied = []
            for statement in (
                "CREATE TABLE intake.sneaky (id int)",
                "DROP TABLE intake.forms",
                "ALTER TABLE intake.leads ADD COLUMN x int",
                "CREATE TABLE public.sneaky (id int)",
                "CREATE SCHEMA sneaky",
                "SELECT count(*) FROM tracker.schema_migrations",
            ):
                try:
                    await app.execute(statement)
                except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError) as e:
                    denied.append((statement, type(e).__name__))
        finally:
            await app.close()
        assert [s for s, _ in denied] == [
            "CREATE TABLE intake.sneaky (id int)",
            "DROP TABLE intake.forms",
            "ALTER TABLE intake.leads ADD COLUMN x int",
            "CREATE TABLE public.sneaky (id int)",
            "CREATE SCHEMA sneaky",
            "SELECT count(*) FROM tracker.schema_migrations",
        ]
        # Not a table it cannot see: the schema it may not use.
        assert all(kind == "InsufficientPrivilegeError" for _, kind in denied), denied
    finally:
        conn = await asyncpg.connect(fresh_dsn)
        try:
            for role in roles:
                await conn.execute(f"DROP OWNED BY {role}")
                await conn.execute(f"DROP ROLE {role}")
        finally:
            await conn.close()
