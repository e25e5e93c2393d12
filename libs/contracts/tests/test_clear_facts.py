"""What a qualification answer or an activity property may say in the clear (decision 0054)."""

from __future__ import annotations

import pytest

from funnel_contracts.events.base import (
    SEALED_VALUE,
    clear_answers,
    clear_properties,
    is_choice,
)


@pytest.mark.parametrize(
    "value",
    ["yes", "No", "decision-maker", "this_quarter", "plan.pro", "q3-2026", "verbal-yes", "A1"],
)
def test_a_choice_travels_as_it_is(value: str) -> None:
    assert is_choice(value)


@pytest.mark.parametrize(
    "value",
    [
        "ada@example.com",  # an address
        "Ada Lovelace",  # words
        "we need a CRM for Ada's team",
        "4915112345678",  # a phone number
        "customer-88421",  # a five-digit run
        "x" * 41,  # longer than a choice
        "",
        "https://example.com/?e=ada",
        "café",  # letters beyond ASCII are words, not a list's choice
    ],
)
def test_words_about_a_person_are_not_a_choice(value: str) -> None:
    assert not is_choice(value)


def test_answers_keep_choices_and_say_only_answered_for_the_rest() -> None:
    answers = {
        "budget": "Yes",
        "need": "We need it for Ada Lovelace's team",
        "timing": " now ",
        "authority": "  ",
        "ada@example.com": "yes",
    }
    assert clear_answers(answers) == {"budget": "Yes", "need": SEALED_VALUE, "timing": "now"}


def test_properties_keep_choices_numbers_and_booleans_seal_text_and_long_numbers() -> None:
    properties: dict[str, str | int | float | bool | None] = {
        "outcome": "verbal-yes",
        "text": "yes",  # a note is sealed even when it is one word
        "plan": "pro",
        "comment": "call me at home",
        "quantity": 3,
        "total": 1234.5,
        "phone": 4915112345678,
        "negative": -1_000_000,
        "gift": False,
        "coupon": None,
        "Ada Lovelace": 1,
    }
    assert clear_properties(properties) == {
        "outcome": "verbal-yes",
        "text": SEALED_VALUE,
        "plan": "pro",
        "comment": SEALED_VALUE,
        "quantity": 3,
        "total": 1234.5,
        "phone": SEALED_VALUE,
        "negative": SEALED_VALUE,
        "gift": False,
        "coupon": None,
    }
