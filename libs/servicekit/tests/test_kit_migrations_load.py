"""Loading migration files: order by version, refuse gaps, duplicates and odd names."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel_servicekit.migrations import (
    KIT_MIGRATIONS,
    MigrationError,
    _checked,
    all_migrations,
    load,
)


def _write(directory: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def test_load_orders_by_version_not_by_creation_or_name(tmp_path: Path) -> None:
    # Created out of order; 0010 must come after 0009, 0002 after 0001.
    names = [f"{v:04d}_step_{11 - v}.sql" for v in (10, 2, 9, 1, 3, 4, 5, 6, 7, 8)]
    _write(tmp_path, {name: f"-- {name}" for name in names})
    found = load("service", tmp_path)
    assert [m.version for m in found] == list(range(1, 11))
    assert [m.name for m in found] == [f"step_{11 - v}" for v in range(1, 11)]
    assert {m.component for m in found} == {"service"}
    assert found[0].sql == "-- 0001_step_10.sql"


def test_load_ignores_files_that_are_not_sql(tmp_path: Path) -> None:
    _write(tmp_path, {"0001_a.sql": "SELECT 1", "README.md": "notes", "0002_b.sql.bak": "x"})
    assert [m.name for m in load("service", tmp_path)] == ["a"]


def test_an_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert load("service", tmp_path) == []


@pytest.mark.parametrize(
    "names",
    [
        ["0001_a.sql", "0003_c.sql"],  # gap
        ["0002_b.sql"],  # does not start at 1
        ["0001_a.sql", "0001_b.sql"],  # duplicate version
    ],
)
def test_gaps_and_duplicate_versions_are_refused(tmp_path: Path, names: list[str]) -> None:
    _write(tmp_path, dict.fromkeys(names, "SELECT 1"))
    with pytest.raises(MigrationError, match="without gaps"):
        load("service", tmp_path)


@pytest.mark.parametrize(
    "name", ["1_a.sql", "0001-a.sql", "0001_Add.sql", "0001_.sql", "00001_a.sql", "0001_a b.sql"]
)
def test_badly_named_files_are_refused(tmp_path: Path, name: str) -> None:
    _write(tmp_path, {"0001_ok.sql": "SELECT 1", name: "SELECT 1"})
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load("service", tmp_path)


def test_checksum_changes_with_the_text(tmp_path: Path) -> None:
    _write(tmp_path, {"0001_a.sql": "CREATE TABLE t (id int);"})
    before = load("service", tmp_path)[0].checksum
    _write(tmp_path, {"0001_a.sql": "CREATE TABLE t (id bigint);"})
    after = load("service", tmp_path)[0].checksum
    assert before != after
    assert len(before) == 64


def test_kit_migrations_come_first_then_the_service(tmp_path: Path) -> None:
    _write(tmp_path, {"0001_leads.sql": "SELECT 1"})
    found = all_migrations(tmp_path)
    kit = load("kit", KIT_MIGRATIONS)
    assert kit, "the kit ships its outbox/inbox tables"
    assert found == [*kit, *load("service", tmp_path)]
    assert [m.component for m in found][-1] == "service"


@pytest.mark.parametrize("schema", ["Intake", "in-take", "1intake", 'x"; DROP SCHEMA y', ""])
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(MigrationError, match="unsafe schema"):
        _checked(schema)


def test_safe_schema_names_pass() -> None:
    assert _checked("stage_tracker") == "stage_tracker"
