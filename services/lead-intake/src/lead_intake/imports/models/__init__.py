"""An import of existing contacts (pure): its options, its rows as flat text, its status.

Both bodies (`text/csv` with a header row, `application/json` with `leads`) become the same
rows: a mapping of field names (imports.models.mapping) to text, numbered from 1 (a CSV's
first row after the header is row 1).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Literal
from uuid import UUID

import ijson

from lead_intake.common.text_rules import nul_path
from lead_intake.imports.models.mapping import (
    CUSTOM,
    FIELDS,
    IGNORE,
    PRESETS,
    QUALIFICATION,
    MappingInvalid,
    check_mapping,
    columns_to_fields,
)

# A row that cannot be a row (a CSV record whose cell count differs from the header's, a cell
# PostgreSQL cannot store): kept as a bad row under this key, its message the value.
SHAPE_ERROR = "_shape"
OnExisting = Literal["skip", "update"]
ON_EXISTING: tuple[str, ...] = ("skip", "update")
Status = Literal["queued", "running", "done"]
# JSON leads' own keys (the form the import took before CSV); everything else is a field name.
_JSON_OBJECTS = {"utm", "custom_fields", "qualification", "consent"}


@dataclass(frozen=True)
class ImportOptions:
    form_id: str
    on_existing: OnExisting
    mapping: dict[str, str]


def mapping_of(raw: str | None, preset: str | None) -> dict[str, str]:
    """A `mapping` query parameter (a preset's name, or a JSON object column -> field) over
    an optional `preset`: the named preset's columns, then the caller's."""
    combined: dict[str, str] = {}
    text = (raw or "").strip()
    if text in PRESETS:
        preset, text = preset or text, ""
    if preset is not None:
        if preset not in PRESETS:
            raise MappingInvalid("preset", f"one of {', '.join(PRESETS)}")
        combined.update(PRESETS[preset])
    if text:
        try:
            given = json.loads(text)
        except (ValueError, RecursionError):
            raise MappingInvalid("mapping", "a preset's name or a JSON object") from None
        if not isinstance(given, dict):
            raise MappingInvalid("mapping", "a preset's name or a JSON object")
        combined.update(check_mapping(given))
    return combined


def storable(row: dict[str, str]) -> dict[str, str]:
    """The row as it can be staged: one with a NUL or an unpaired surrogate (which PostgreSQL
    cannot store) becomes a bad row naming the field."""
    for name, value in row.items():
        if nul_path(value) is not None:
            return {SHAPE_ERROR: f"{name} holds a NUL or an unpaired surrogate character"}
    return row


def flat_row(index: int, item: object) -> dict[str, str]:
    """A JSON lead as a row of field names to text (`leads.<i>.<key>` names a bad key)."""
    if not isinstance(item, dict):
        raise MappingInvalid(f"leads.{index}", "must be an object")
    row: dict[str, str] = {}
    for key, value in item.items():
        if key in _JSON_OBJECTS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise MappingInvalid(f"leads.{index}.{key}", "must be an object")
            row.update(_nested(index, key, value))
        elif key in FIELDS or key.startswith((CUSTOM, QUALIFICATION)):
            row[key] = _text(index, key, value)
        else:
            raise MappingInvalid(f"leads.{index}.{key}", "not a field of an import")
    return storable(row)


def _nested(index: int, key: str, value: Mapping[str, Any]) -> dict[str, str]:
    if key == "utm":
        return {f"utm_{k}": _text(index, f"utm.{k}", v) for k, v in value.items()}
    if key == "custom_fields":
        return {f"{CUSTOM}{k}": _text(index, f"custom_fields.{k}", v) for k, v in value.items()}
    if key == "qualification":
        return {f"{QUALIFICATION}{k}": _text(index, key, v) for k, v in value.items()}
    row = {"consent": "true" if value.get("granted", True) else "false"}
    for name, field in (("given_at", "consent_at"), ("text", "consent_text")):
        if value.get(name) is not None:
            row[field] = _text(index, f"consent.{name}", value[name])
    categories = value.get("categories")
    if categories:
        if not isinstance(categories, list):
            raise MappingInvalid(f"leads.{index}.consent.categories", "must be a list")
        row["consent_categories"] = ",".join(str(c) for c in categories)
    return row


def _text(index: int, key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MappingInvalid(f"leads.{index}.{key}", "must be text")


@dataclass(frozen=True)
class ImportState:
    """An import as GET /v1/imports/{import_id} tells it."""

    id: UUID
    form_id: str
    on_existing: str
    status: str
    rows: int
    imported: int
    existing: int
    updated: int
    failed: int
    errors: list[dict[str, object]]
    created_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "import_id": str(self.id),
            "form_id": self.form_id,
            "on_existing": self.on_existing,
            "status": self.status,
            "rows": self.rows,
            "imported": self.imported,
            "existing": self.existing,
            "updated": self.updated,
            "failed": self.failed,
            "errors": self.errors,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass
class BatchCounts:
    """What one batch of rows did."""

    imported: int = 0
    existing: int = 0
    updated: int = 0
    failed: int = 0
    rows: int = 0


class MalformedCsv(ValueError):
    """A file the csv reader cannot read (a runaway quote, a cell far too long)."""


def csv_rows(
    text: Iterable[str], mapping: Mapping[str, str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of a CSV file (a header row first), numbered from 1 after the header, read
    as they are needed (the file is never held whole). A comma or a semicolon separates
    cells, as the header row shows. MappingInvalid names a column the import cannot read."""
    lines = iter(text)
    try:
        first = next(lines)
    except StopIteration:
        raise MappingInvalid("body", "the file is empty: a header row is required") from None
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        fields = columns_to_fields(header, mapping)
        number = 0
        for record in reader:
            if not record or record == [""]:
                continue  # a blank line
            number += 1
            if len(record) != len(fields):
                shape = f"{len(record)} cells where the header has {len(fields)}"
                yield number, {SHAPE_ERROR: shape}
                continue
            row = {f: v for f, v in zip(fields, record, strict=True) if f != IGNORE and v}
            yield number, storable(row)
    except csv.Error as exc:
        raise MalformedCsv(f"line {reader.line_num}: {exc}") from None


# --- JSON bodies, read as they go ------------------------------------------------------------

# A JSON import's own keys; everything else at the top is refused, naming it.
JSON_OPTIONS = ("form_id", "on_existing", "leads")
# A \uD800-\uDFFF escape: the fast (C) parser turns a lone one into "?" unseen, so a body
# holding one is read by ijson's pure-Python parser, which keeps it (the row is then refused
# as unstorable, as json.loads would have it).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_SCAN_CHUNK = 64 * 1024


class MalformedJson(ValueError):
    """A body that is not one JSON document."""


@dataclass(frozen=True)
class JsonHead:
    """What a JSON import says besides its leads, read without building them."""

    form_id: str | None
    on_existing: str | None
    backend: Any  # the ijson parser this body is read with


def json_head(body: IO[bytes]) -> JsonHead:
    """A first pass over `{"form_id", "on_existing", "leads": [...]}`: the whole document
    checked (MalformedJson), its options read, its keys checked and `leads` a list of at
    least one (MappingInvalid naming the field), in memory bounded by the parser's buffer.
    Leaves `body` at its start."""
    backend = _backend_for(body)
    values: dict[str, str | None] = {}
    unknown: list[str] = []
    leads = 0
    has_leads = False
    try:
        for prefix, event, value in backend.parse(body, use_float=True):
            if prefix == "":
                if event == "map_key":
                    if value not in JSON_OPTIONS:
                        unknown.append(str(value))
                    elif value == "leads":
                        leads += 1
                elif event not in ("start_map", "end_map"):
                    raise MappingInvalid("body", "must be a JSON object with leads")
            elif prefix in ("form_id", "on_existing"):
                if event == "string":
                    values[prefix] = value
                elif event != "null":
                    raise MappingInvalid(prefix, "must be text")
            elif prefix == "leads" and event not in ("start_array", "end_array"):
                raise MappingInvalid("leads", "a list of at least one lead")
            elif prefix == "leads.item":
                has_leads = True
    except (ijson.JSONError, UnicodeDecodeError):
        raise MalformedJson("not valid JSON") from None
    finally:
        body.seek(0)
    if unknown:
        name = sorted(unknown)[0]
        raise MappingInvalid(_UNSTORABLE_KEY.sub("?", name), "not a field of an import")
    if leads > 1:
        raise MappingInvalid("leads", "given more than once")
    if not has_leads:
        raise MappingInvalid("leads", "a list of at least one lead")
    for name, text in values.items():
        if text is not None and nul_path(text) is not None:
            raise MappingInvalid(name, "must not contain NUL or unpaired surrogate characters")
    return JsonHead(values.get("form_id"), values.get("on_existing"), backend)


def json_rows(body: IO[bytes], head: JsonHead) -> Iterator[tuple[int, dict[str, str]]]:
    """The leads of a JSON import as rows numbered from 1, one lead built at a time (the
    second pass; `json_head` made the first). MappingInvalid names a lead that is not an
    object, or a key that is not a field (`leads.<i>.<key>`)."""
    try:
        for index, item in enumerate(head.backend.items(body, "leads.item", use_float=True)):
            yield index + 1, flat_row(index, item)
    except (ijson.JSONError, UnicodeDecodeError):
        raise MalformedJson("not valid JSON") from None


_UNSTORABLE_KEY = re.compile("[\x00\ud800-\udfff]")


def _backend_for(body: IO[bytes]) -> Any:
    """The C parser, unless the body escapes a surrogate (see _SURROGATE_ESCAPE)."""
    tail = b""
    try:
        while chunk := body.read(_SCAN_CHUNK):
            if _SURROGATE_ESCAPE.search(tail + chunk):
                return ijson.get_backend("python")
            tail = chunk[-6:]
    finally:
        body.seek(0)
    return ijson
