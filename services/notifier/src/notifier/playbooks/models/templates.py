"""Email templates: per-locale subject, text and HTML, rendered in a Jinja2 sandbox (pure).

The sandbox keeps a template away from Python internals (`{{ ''.__class__ }}` raises), and
StrictUndefined turns an unknown variable into an error instead of an empty string, so a
template that does not render is refused when its playbook is saved, with the line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from notifier.playbooks.models import LocalizedTemplate

SHIPPED_DIR = Path(__file__).parents[1] / "catalog" / "templates"
FALLBACK_LOCALE = "en"
# Regions whose Chinese is written in Traditional characters.
_HANT_REGIONS = {"TW", "HK", "MO"}


class TemplateProblem(ValueError):
    """A template that does not render: where (locale, part, line) and why."""

    def __init__(self, locale: str, part: str, line: int | None, message: str) -> None:
        where = f"{locale}.{part}" + (f" line {line}" if line else "")
        super().__init__(f"{where}: {message}")
        self.locale = locale
        self.part = part
        self.line = line
        self.message = message


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


def _environment(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def candidate_locales(locale: str | None) -> list[str]:
    """BCP 47 fallbacks, most specific first: sv-SE -> sv -> en; zh-TW -> zh-Hant -> en."""
    found: list[str] = []
    if locale:
        parts = locale.replace("_", "-").split("-")
        lang = parts[0].lower()
        rest = parts[1:]
        if lang == "zh":
            script = next((p.title() for p in rest if len(p) == 4), None)
            region = next((p.upper() for p in rest if len(p) == 2), None)
            if script is None and region in _HANT_REGIONS:
                script = "Hant"
            if script:
                found.append(f"zh-{script}")
        found.append("-".join([lang, *rest]) if rest and lang != "zh" else lang)
        found.append(lang)
    found.append(FALLBACK_LOCALE)
    return list(dict.fromkeys(found))


def pick(templates: Mapping[str, LocalizedTemplate], locale: str | None) -> tuple[str, Any]:
    """The best template for the locale (by BCP 47 fallback, then English)."""
    lowered = {k.lower(): k for k in templates}
    for candidate in candidate_locales(locale):
        key = lowered.get(candidate.lower())
        if key is not None:
            return key, templates[key]
    raise KeyError(f"no template for {locale!r} and no {FALLBACK_LOCALE}")


@lru_cache(maxsize=512)
def _compiled(html: bool, source: str) -> Template:
    """Compiling is most of a render's cost; a template's source compiles once."""
    return (_HTML if html else _TEXT).from_string(source)


def _render(
    env: SandboxedEnvironment, source: str, context: Mapping[str, Any], where: tuple[str, str]
) -> str:
    locale, part = where
    try:
        return _compiled(env is _HTML, source).render(**context)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(locale, part, exc.lineno, exc.message or "syntax error") from exc
    except TemplateError as exc:
        raise TemplateProblem(locale, part, _line_of(exc), str(exc)) from exc


def _line_of(exc: BaseException) -> int | None:
    """The template line a render error happened on (from the traceback's template frame)."""
    tb = exc.__traceback__
    line: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(
    template: LocalizedTemplate, context: Mapping[str, Any], locale: str = "en"
) -> RenderedEmail:
    """Render the three parts; TemplateProblem names the locale, part and line at fault."""
    ctx = {**context, "tracked": context.get("tracked", _untracked)}
    text_env, html_env = _TEXT, _HTML
    subject = _render(text_env, template.subject, ctx, (locale, "subject")).strip()
    text = _render(text_env, template.text, ctx, (locale, "text"))
    html = _render(html_env, template.html, ctx, (locale, "html")) if template.html else None
    return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)


def _untracked(url: str) -> str:
    return url


SAMPLE_CONTEXT: dict[str, Any] = {
    "first_name": "Ada",
    "name": "Ada",
    "playbook": "sample",
    "stage": "interest",
    "funnel_id": "digital-sales",
    "unsubscribe_url": "https://example.invalid/t/u/sample",
}


def check(templates: Mapping[str, LocalizedTemplate], kind: str) -> None:
    """Render every locale with sample values: refuse what does not render (with the line).

    Transactional mail has no unsubscribe link, so its templates may not use one; marketing
    mail must show it in every part a person reads.
    """
    context = dict(SAMPLE_CONTEXT)
    if kind != "marketing":
        context.pop("unsubscribe_url")
    context["tracked"] = _untracked
    for locale, template in templates.items():
        rendered = render(template, context, locale)
        if kind == "marketing":
            url = SAMPLE_CONTEXT["unsubscribe_url"]
            for part, body in (("text", rendered.text), ("html", rendered.html)):
                if body is not None and url not in body:
                    raise TemplateProblem(
                        locale, part, None, "marketing mail must show {{ unsubscribe_url }}"
                    )


@cache
def shipped(name: str) -> dict[str, LocalizedTemplate]:
    """A template shipped with the service (catalog/templates/<name>.yaml), by locale."""
    path = SHIPPED_DIR / f"{name}.yaml"
    if not path.is_file() or not name.replace("-", "").isalnum():
        raise KeyError(f"no shipped template {name!r}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {locale: LocalizedTemplate.model_validate(t) for locale, t in raw.items()}


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


Tracker = Callable[[str], str]
