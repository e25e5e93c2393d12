"""A signal's stored JSON written by its template is the encoder's text of `to_json()`, byte
for byte, and reads back as the same signal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from funnel_contracts.envelope import json_text
from stage_tracker.scoring.models.signals import Signal

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_VALUE = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=3))]
)


@settings(max_examples=300, deadline=None)
@given(
    names=st.tuples(_TEXT, _TEXT, _TEXT),
    when=st.datetimes(timezones=_ZONES) | st.datetimes(),
    properties=st.dictionaries(_TEXT, _VALUE, max_size=3),
    answers=st.dictionaries(_TEXT, _TEXT, max_size=3),
    funnel_id=st.none() | _TEXT,
)
def test_the_template_writes_the_encoder_s_text(
    names: tuple[str, str, str],
    when: object,
    properties: dict[str, object],
    answers: dict[str, str],
    funnel_id: str | None,
) -> None:
    event_id, event_type, kind = names
    signal = Signal(event_id, event_type, kind, when, properties, answers, funnel_id)  # type: ignore[arg-type]
    text = signal.to_json_text()
    assert text == json_text(signal.to_json())
    assert Signal.from_json(json.loads(text)) == signal


def test_a_value_of_another_type_goes_through_the_encoder() -> None:
    signal = Signal(7, "t", "k", datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    assert signal.to_json_text() == json_text(signal.to_json())
