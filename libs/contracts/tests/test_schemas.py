"""The committed JSON Schemas match the models, and published versions stay compatible."""

import json
from pathlib import Path

import pytest

from funnel_contracts import EVENT_MODELS, parse_event
from funnel_contracts.schemas import SCHEMA_DIR, incompatibilities, render, schema_of

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_committed_schema_equals_the_model(event_type: str) -> None:
    committed = (SCHEMA_DIR / f"{event_type}.json").read_text()
    assert committed == render(schema_of(event_type)), (
        "schema out of date: run `make schemas` and commit libs/contracts/schemas"
    )


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_model_is_backward_compatible_with_the_published_schema(event_type: str) -> None:
    published = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    assert incompatibilities(published, schema_of(event_type)) == []


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_messages_written_to_the_published_version_still_parse(event_type: str) -> None:
    golden = json.loads((GOLDEN / f"{event_type}.json").read_text())
    event = parse_event(event_type, golden)
    assert str(event.lead_id) == golden["lead_id"]
    # What we write today must carry every field a v1 reader was promised.
    assert set(golden) <= set(event.model_dump(mode="json"))


def _schema(properties: dict[str, object], required: list[str]) -> dict[str, object]:
    return {"type": "object", "properties": properties, "required": required}


STR = {"type": "string"}
INT = {"type": "integer"}


def test_removing_a_field_is_incompatible() -> None:
    old = _schema({"a": STR, "b": STR}, ["a"])
    assert incompatibilities(old, _schema({"a": STR}, ["a"])) == ["b: removed"]


def test_retyping_a_field_is_incompatible() -> None:
    old = _schema({"a": STR}, ["a"])
    assert incompatibilities(old, _schema({"a": INT}, ["a"])) == ["a: type changed"]


def test_a_new_required_field_is_incompatible() -> None:
    old = _schema({"a": STR}, ["a"])
    new = _schema({"a": STR, "b": STR}, ["a", "b"])
    assert incompatibilities(old, new) == ["b: newly required"]


def test_a_new_optional_field_and_new_docs_are_compatible() -> None:
    old = _schema({"a": STR}, ["a"])
    new = _schema({"a": {"type": "string", "description": "now documented"}, "b": STR}, ["a"])
    assert incompatibilities(old, new) == []


def test_nested_objects_are_checked_through_refs() -> None:
    old = {
        "type": "object",
        "properties": {"utm": {"$ref": "#/$defs/Utm"}},
        "$defs": {"Utm": _schema({"source": STR}, [])},
    }
    new = {
        "type": "object",
        "properties": {"utm": {"$ref": "#/$defs/Utm"}},
        "$defs": {"Utm": _schema({}, [])},
    }
    assert incompatibilities(old, new) == ["utm.source: removed"]
