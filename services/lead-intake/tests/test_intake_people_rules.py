"""The people workspace's pure rules: the blind index, a search's words, consent per category,
a correction, offline touches."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from funnel_contracts.sealed import new_data_key, unseal
from lead_intake.activities.models import ActivityBatch, offline_errors, public_key_errors
from lead_intake.common import blind_index
from lead_intake.common.blind_index import BlindIndex, fold, prefixes, query_words, words
from lead_intake.people.models import (
    Contact,
    PersonPatch,
    consent_changes,
    consent_state,
    corrected,
    correction_event,
)

KEY = b"unit-test-search-index-key-0123456789"


def test_folding_drops_case_and_accents() -> None:
    assert fold("ÅSA Öberg-Ñúñez") == "asa oberg-nunez"
    assert words("Anne-Marie O'Neil") == {"anne-marie", "anne", "marie", "o'neil", "o", "neil"}
    assert prefixes("christopherson") == {"christopherson"[:n] for n in range(2, 13)}
    assert prefixes("k") == set()


def test_a_person_s_terms_cover_each_prefix_and_the_exact_email_and_phone() -> None:
    index = BlindIndex(KEY)
    terms = set(
        index.person_terms(
            email="kay.lind@example.com", phone="+46701112233", first_name="Åsa", last_name=None
        )
    )
    assert index.email("kay.lind@example.com") in terms
    assert index.phone("+46701112233") in terms
    for word in ("as", "asa", "ka", "kay", "kay.l", "li", "lind"):
        assert index.prefix(word) in terms
    assert index.prefix("ex") not in terms  # the domain is not a name
    assert index.prefix("a") not in terms
    # Another key gives other digests: without the key nobody can compute the index.
    assert BlindIndex(b"another-key-of-sixteen-bytes+").email("kay.lind@example.com") not in terms
    assert len(index.email("x@example.com")) == 16


def test_prefix_entries_kept_from_earlier_people_are_the_same_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entries found among the recent ones equal freshly made ones; the store stays bounded."""
    monkeypatch.setattr(blind_index, "RECENT_PREFIXES", 8)
    index = BlindIndex(KEY)
    people = [("Anna", "Lind"), ("Anne", "Lindqvist"), ("Anna", "Lind"), ("Bo", "Ek")]
    made = [
        index.person_terms(email=None, phone=None, first_name=f, last_name=last)
        for f, last in people
    ]
    fresh = [
        BlindIndex(KEY).person_terms(email=None, phone=None, first_name=f, last_name=last)
        for f, last in people
    ]
    assert made == fresh
    assert made[0] == made[2]
    assert len(index._recent) <= 8
    expected = hmac.digest(KEY, b"q\x00anna", "sha256")[:16]
    assert index.prefix("anna") == expected


def test_a_search_s_words() -> None:
    assert query_words("  Öber ") == ["ober"]
    assert query_words("kay.lind@exa") == ["kay.lind"]
    assert query_words("Anna Lind") == ["anna", "lind"]
    assert query_words("christophersonn") == ["christophers"]
    for short in ("a", " ", "Ö", "ann b"):
        with pytest.raises(ValueError, match="2 characters"):
            query_words(short)


def test_consent_per_category_the_newer_wins() -> None:
    captured = {
        "text": "yes",
        "categories": ["marketing", "news"],
        "given_at": "2026-01-01T00:00:00+00:00",
    }
    changes = {
        "marketing": {"granted": False, "at": "2026-02-01T00:00:00+00:00", "source": "manual:ana"},
        "news": {"granted": False, "at": "2025-12-01T00:00:00+00:00", "source": "manual:ben"},
        "calls": {"granted": True, "at": "2026-02-01T00:00:00+00:00", "source": "manual:ana"},
    }
    state = consent_state(captured, "form:shop", changes)
    assert {c: (s.granted, s.source) for c, s in state.items()} == {
        "marketing": (False, "manual:ana"),
        "news": (True, "form:shop"),
        "calls": (True, "manual:ana"),
    }


def test_a_correction_changes_only_the_fields_it_names() -> None:
    current = Contact("a@example.com", "+46701112233", "Al", "Lind", "sv-SE", None, {"k": "v"})
    patch = PersonPatch.model_validate(
        {"email": " Al.New@Example.COM ", "last_name": None, "time_zone": "Europe/Stockholm"}
    )
    new = corrected(current, patch)
    assert new == Contact(
        "al.new@example.com", "+46701112233", "Al", None, "sv-SE", "Europe/Stockholm", {"k": "v"}
    )
    for bad in (
        {},
        {"email": "nope"},
        {"phone": "0701112233"},
        {"locale": "not a tag"},
        {"time_zone": "Mars/Base"},
        {"consent": {"granted": ["x"], "withdrawn": ["x"]}},
        {"actor": "someone"},
    ):
        with pytest.raises(ValidationError):
            PersonPatch.model_validate(bad)


def test_a_correction_event_is_sealed_and_manual() -> None:
    key, lead_id, at = new_data_key(), uuid4(), datetime(2026, 3, 1, tzinfo=UTC)
    contact = Contact("a@example.com", None, "Al", None, None, None, {})
    event = correction_event(lead_id, contact, granted=["news"], key=key, actor="ana", at=at)
    assert event.source == "manual"
    assert "a@example.com" not in event.model_dump_json()
    opened = unseal(event.personal_data, key=key, lead_id=lead_id, event_type=event.event_type)
    assert (opened.email, opened.first_name) == ("a@example.com", "Al")
    assert event.consent is not None
    assert event.consent.categories == ("news",)
    withdrawal = PersonPatch.model_validate({"consent": {"withdrawn": ["news"]}}).consent
    assert withdrawal is not None
    changes = consent_changes(withdrawal, at=at, actor="ana")
    assert changes == {"news": {"granted": False, "at": at.isoformat(), "source": "manual:ana"}}


def _batch(*items: dict[str, object]) -> ActivityBatch:
    base = {"occurred_at": "2026-03-01T10:00:00Z", "visitor_id": "visitor-0001"}
    return ActivityBatch.model_validate({"activities": [{**base, **i} for i in items]})


def test_offline_touches_have_bounded_texts_and_never_come_with_a_public_key() -> None:
    batch = _batch(
        {"type": "call_logged", "properties": {"outcome": "reached", "text": "ok"}},
        {"type": "meeting_held", "properties": {"outcome": 3}},
        {"type": "note_added", "properties": {}},
        {"type": "event_attended", "properties": {"outcome": "x" * 101}},
        {"type": "page_view", "properties": {"outcome": 3}},
        {"type": "call_logged", "actor": "mallory"},
    )
    assert [e["field"] for e in offline_errors(batch)] == [
        "activities.1.properties.outcome",
        "activities.2.properties.text",
        "activities.3.properties.outcome",
    ]
    refused = public_key_errors(batch)
    assert [e["field"] for e in refused] == [f"activities.{i}.type" for i in (0, 1, 2, 3, 5)]
    assert "activity_type" in refused[0]["message"]
    # The body's actor is ignored: only the key's name is kept.
    assert "actor" not in batch.activities[5].details()
    assert batch.activities[5].details("ana")["actor"] == "ana"
    assert "actor" not in batch.activities[4].details("ana")


def test_folding_ascii_text_takes_a_shortcut_to_the_same_answer() -> None:
    import unicodedata

    def slow(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text)
        stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
        return unicodedata.normalize("NFC", stripped).casefold()

    every_ascii = "".join(chr(c) for c in range(128))
    assert fold(every_ascii) == slow(every_ascii)
    assert fold("Kay.Lind+News_2") == slow("Kay.Lind+News_2") == "kay.lind+news_2"
