"""An import's columns and rows (pure): mapping, presets, times, consent, the stage check."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from lead_intake.imports.models import csv_rows, mapping_of
from lead_intake.imports.models.mapping import MappingInvalid, columns_to_fields
from lead_intake.imports.models.rows import FormRules, ImportRow, parse_row, parse_time

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
RULES = FormRules("SE", "Yes please", "v2", ("marketing",), ("awareness", "interest", "desire"))


def test_a_column_is_its_own_field_or_its_mapping_and_anything_else_is_named() -> None:
    assert columns_to_fields(["Email", "First Name", "x"], {"x": "custom.x"}) == [
        "email", "first_name", "custom.x",
    ]  # fmt: skip
    with pytest.raises(MappingInvalid) as unknown:
        columns_to_fields(["email", "Shoe"], {})
    assert unknown.value.field == "Shoe"
    with pytest.raises(MappingInvalid) as twice:
        columns_to_fields(["email", "Mail"], {"Mail": "email"})
    assert twice.value.field == "Mail"
    with pytest.raises(MappingInvalid) as nobody:
        columns_to_fields(["first_name"], {})
    assert nobody.value.field == "email"


def test_a_preset_and_a_callers_mapping_combine() -> None:
    combined = mapping_of('{"Deal size": "custom.deal_size"}', "hubspot")
    assert (combined["Create Date"], combined["Deal size"]) == ("captured_at", "custom.deal_size")
    assert mapping_of("mautic", None)["mobile"] == "phone"
    with pytest.raises(MappingInvalid) as bad:
        mapping_of('{"a": "nope"}', None)
    assert bad.value.field == "mapping.a"
    with pytest.raises(MappingInvalid):
        mapping_of(None, "salesforce")


def test_csv_rows_are_numbered_after_the_header_and_a_short_row_is_a_bad_row() -> None:
    text = io.StringIO("email;first_name\r\na@example.com;Ann\r\n\r\nb@example.com\r\n")
    rows = list(csv_rows(text, {}))
    assert rows[0] == (1, {"email": "a@example.com", "first_name": "Ann"})
    assert rows[1][0] == 2
    [error] = parse_row(2, rows[1][1], RULES, now=NOW)  # type: ignore[misc]
    assert (error.row, error.field) == (2, "row")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05T12:00:00Z", datetime(2024, 3, 5, 12, tzinfo=UTC)),
        ("2024-03-05 12:00", datetime(2024, 3, 5, 12, tzinfo=UTC)),
        ("2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
        ("1709640000000", datetime(2024, 3, 5, 12, tzinfo=UTC)),
    ],
)
def test_times_in_the_shapes_exports_use(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_a_row_with_consent_answers_and_a_stage() -> None:
    row = parse_row(
        1,
        {"phone": "070-123 45 67", "consent": "yes", "consent_at": "2024-01-02",
         "budget": "yes", "qualification.seats": "5", "stage": "desire",
         "entered_at": "2024-02-01", "captured_at": "2024-01-01", "locale": "sv_SE"},
        RULES,
        now=NOW,
    )  # fmt: skip
    assert isinstance(row, ImportRow)
    assert (row.submission.email, row.submission.phone) == (None, "+46701234567")
    assert row.submission.consent is not None
    assert (row.submission.consent.text, row.submission.consent.categories) == (
        "Yes please", ("marketing",),
    )  # fmt: skip
    assert row.submission.consent.given_at == datetime(2024, 1, 2, tzinfo=UTC)
    assert row.submission.qualification == {"budget": "yes", "seats": "5"}
    assert (row.stage, row.entered_at) == ("desire", datetime(2024, 2, 1, tzinfo=UTC))
    assert row.submission.locale == "sv-SE"


def test_every_field_at_fault_is_named() -> None:
    errors = parse_row(
        7,
        {"email": "nope", "stage": "lost", "entered_at": "2020-01-01",
         "captured_at": "2030-01-01", "time_zone": "Mars/Base"},
        RULES,
        now=NOW,
    )  # fmt: skip
    assert isinstance(errors, list)
    assert sorted(e.field for e in errors) == ["captured_at", "email", "stage", "time_zone"]
    assert {e.row for e in errors} == {7}
    assert parse_row(8, {}, RULES, now=NOW)[0].field == "email"  # type: ignore[index]


def test_a_cell_postgresql_cannot_store_is_a_bad_row_not_a_refused_file() -> None:
    rows = list(csv_rows(io.StringIO("email,first_name\na@example.com,A\x00n\n"), {}))
    assert rows == [(1, {"_shape": "first_name holds a NUL or an unpaired surrogate character"})]
    [error] = parse_row(1, rows[0][1], RULES, now=NOW)  # type: ignore[misc]
    assert (error.row, error.field) == (1, "row")
    with pytest.raises(MappingInvalid):
        mapping_of("[" * 5000 + "]" * 5000, None)
