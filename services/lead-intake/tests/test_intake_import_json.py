"""A JSON import read as it goes (pure): the first pass's options and refusals, the leads one
at a time, and the same rows json.loads would have given."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from lead_intake.common.blind_index import BlindIndex
from lead_intake.imports.models import (
    SHAPE_ERROR,
    MalformedJson,
    flat_row,
    json_head,
    json_rows,
)
from lead_intake.imports.models.mapping import MappingInvalid


def _read(raw: bytes) -> tuple[str | None, str | None, list[tuple[int, dict[str, str]]]]:
    body = io.BytesIO(raw)
    head = json_head(body)
    return head.form_id, head.on_existing, list(json_rows(body, head))


def test_options_anywhere_and_leads_as_json_loads_reads_them() -> None:
    leads = [
        {"email": "a@example.com", "utm": {"source": "fair"}, "custom_fields": {"n": 1.5}},
        {"phone": "+46701234567", "consent": {"granted": True, "categories": ["news"]}},
        {"email": "b@example.com", "qualification": {"budget": 10}, "first_name": None},
    ]
    raw = json.dumps({"leads": leads, "on_existing": "update", "form_id": "shop"}).encode()
    form_id, on_existing, rows = _read(raw)
    assert (form_id, on_existing) == ("shop", "update")
    assert rows == [(i + 1, flat_row(i, lead)) for i, lead in enumerate(json.loads(raw)["leads"])]
    assert rows[0][1]["custom.n"] == "1.5"  # a float as json.loads gives it, not a Decimal


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'[{"email": "a@example.com"}]', "body"),
        (b'{"form_id": "shop"}', "leads"),
        (b'{"form_id": "shop", "leads": []}', "leads"),
        (b'{"form_id": "shop", "leads": {"item": {"email": "a@b.se"}}}', "leads"),
        (b'{"form_id": "shop", "leads": [{"email": "a@b.se"}], "shoe": 1, "hat": 2}', "hat"),
        (b'{"form_id": 7, "leads": [{"email": "a@b.se"}]}', "form_id"),
        (b'{"form_id": "sh\\u0000op", "leads": [{"email": "a@b.se"}]}', "form_id"),
        (b'{"leads": [{"email": "a@b.se"}], "leads": [{"email": "c@b.se"}]}', "leads"),
    ],
)
def test_the_first_pass_names_what_is_wrong(raw: bytes, field: str) -> None:
    with pytest.raises(MappingInvalid) as refused:
        json_head(io.BytesIO(raw))
    assert refused.value.field == field


@pytest.mark.parametrize(
    "raw", [b"", b'{"leads": [{"email": "a@b.se"}', b'{"leads": []} x', b'{"a": "\xff"}']
)
def test_a_body_that_is_not_one_json_document_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        json_head(io.BytesIO(raw))


def test_a_lead_that_is_not_an_object_or_has_an_unknown_key_is_named() -> None:
    with pytest.raises(MappingInvalid) as shoe:
        _read(b'{"leads": [{"email": "a@b.se"}, {"email": "c@b.se", "shoe": "42"}]}')
    assert shoe.value.field == "leads.1.shoe"
    with pytest.raises(MappingInvalid) as text:
        _read(b'{"leads": ["a@b.se"]}')
    assert text.value.field == "leads.0"


def test_unstorable_text_is_a_bad_row_and_a_lone_surrogate_is_not_turned_into_a_mark() -> None:
    raw = (
        b'{"leads": [{"email": "a@b.se", "first_name": "A\\u0000n"},'
        b' {"email": "c@b.se", "last_name": "\\ud800"},'
        b' {"email": "d@b.se", "first_name": "\\ud83d\\ude00 Joy"}]}'
    )
    _, _, rows = _read(raw)
    assert [SHAPE_ERROR in row for _, row in rows] == [True, True, False]
    assert rows[1][1][SHAPE_ERROR].startswith("last_name")
    assert rows[2][1]["first_name"] == "\U0001f600 Joy"  # a surrogate pair is one character


def _body(leads: int) -> bytes:
    return json.dumps(
        {
            "form_id": "shop",
            "leads": [
                {"email": f"p{i}.someone@example.com", "first_name": "Someone",
                 "custom_fields": {"n": str(i)}}
                for i in range(leads)
            ],
        }
    ).encode()  # fmt: skip


def _peak(call: object) -> int:
    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_leads_are_built_one_at_a_time_in_memory_that_does_not_grow_with_the_body() -> None:
    peaks, sizes = [], []
    for leads in (10_000, 40_000):
        body = _body(leads)

        def read(body: bytes = body, leads: int = leads) -> None:
            stream = io.BytesIO(body)
            head = json_head(stream)
            assert sum(1 for _ in json_rows(stream, head)) == leads

        peaks.append(_peak(read))
        sizes.append(len(body))
    whole = _peak(lambda: json.loads(_body(40_000)))
    # json.loads holds every lead at once (a few times the body's bytes); the reader holds one
    # lead and the parser's buffer, the same for 4x the leads.
    assert whole > 2 * sizes[1]
    assert peaks[1] < sizes[1] / 3
    assert peaks[1] < 1.5 * peaks[0]


def test_a_batchs_remembering_index_makes_the_same_entries() -> None:
    index = BlindIndex(b"k" * 32)
    batch = index.remembering()
    people = [
        ("Anne-Marie", "Öberg", "anne.oberg@example.com", "+46701234567"),
        ("Anne", "Oberg", "anne@example.com", None),
        ("Kay", None, None, "+4670111"),
    ]
    for first, last, email, phone in people * 2:
        kwargs = {"first_name": first, "last_name": last, "email": email, "phone": phone}
        assert batch.person_terms(**kwargs) == index.person_terms(**kwargs)
