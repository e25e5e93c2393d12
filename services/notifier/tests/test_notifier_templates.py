"""Templates: sandboxed, strict about unknown variables, with the line of an error (pure)."""

import pytest

from notifier.playbooks.models import LocalizedTemplate
from notifier.playbooks.models.templates import (
    TemplateProblem,
    candidate_locales,
    check,
    pick,
    render,
)


def _t(text: str, html: str | None = None, subject: str = "Hi") -> LocalizedTemplate:
    return LocalizedTemplate(subject=subject, text=text, html=html)


def test_a_template_cannot_reach_python_internals() -> None:
    evil = _t("{{ first_name.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateProblem) as caught:
        render(evil, {"first_name": "Ada"})
    assert "unsafe" in caught.value.message or "__class__" in caught.value.message


def test_an_unknown_variable_is_refused_with_its_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        check({"en": _t("Hello\n\n{{ frist_name }}\n")}, "transactional")
    assert (caught.value.locale, caught.value.part, caught.value.line) == ("en", "text", 3)
    assert "frist_name" in caught.value.message


def test_a_syntax_error_is_refused_with_its_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        check({"en": _t("ok", html="<p>\n\n{{ first_name }\n</p>")}, "transactional")
    assert (caught.value.part, caught.value.line) == ("html", 3)


def test_marketing_templates_must_show_the_unsubscribe_link() -> None:
    with pytest.raises(TemplateProblem, match="unsubscribe_url"):
        check({"en": _t("Buy now")}, "marketing")
    check({"en": _t("Buy now. Stop: {{ unsubscribe_url }}")}, "marketing")
    with pytest.raises(TemplateProblem, match="unsubscribe_url"):  # not there in transactional
        check({"en": _t("Receipt. {{ unsubscribe_url }}")}, "transactional")


def test_html_is_escaped_and_text_is_not() -> None:
    rendered = render(
        _t("Hi {{ first_name }}", html="<p>Hi {{ first_name }}</p>"), {"first_name": "<Ada>"}
    )
    assert rendered.text == "Hi <Ada>"
    assert rendered.html == "<p>Hi &lt;Ada&gt;</p>"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("sv-SE", "sv"),
        ("zh-TW", "zh-Hant"),
        ("zh-Hant-HK", "zh-Hant"),
        ("zh-CN", "en"),
        ("ru", "ru"),
        ("de-DE", "en"),
        (None, "en"),
    ],
)
def test_the_locale_falls_back_from_specific_to_english(locale: str | None, expected: str) -> None:
    templates = {k: _t(k) for k in ("en", "sv", "zh-Hant", "ru")}
    assert pick(templates, locale)[0] == expected
    assert candidate_locales(locale)[-1] == "en"
