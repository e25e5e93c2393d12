"""The README's tour is drawn from the code and the code agrees with it: each service's
declared wiring (`interface.py`) against the events its source constructs, the topics its
consumers subscribe to, and the settings and paths of its HTTP calls."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from funnel_contracts import EVENT_MODELS
from funnel_contracts.topology import ServiceInterface
from scripts.generate_tour import README, SERVICES, with_tour

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "lead-intake": "lead_intake",
    "stage-tracker": "stage_tracker",
    "notifier": "notifier",
    "reporting": "reporting",
}
EVENT_TOPICS = {model.__name__: model.topic for model in EVENT_MODELS.values()}


def _modules(service: str) -> list[tuple[str, ast.Module]]:
    src = ROOT / "services" / service / "src"
    found = []
    for path in sorted(src.rglob("*.py")):
        dotted = ".".join(path.relative_to(src).with_suffix("").parts)
        found.append((dotted, ast.parse(path.read_text(), str(path))))
    return found


def _by_name(name: str) -> ServiceInterface:
    return next(s for s in SERVICES if s.name == name)


def test_the_readme_tour_is_the_generated_one() -> None:
    text = README.read_text()
    assert with_tour(text) == text, "README.md's tour is out of date: run make tour"


def test_every_service_declares_its_wiring() -> None:
    assert sorted(s.name for s in SERVICES) == sorted(PACKAGES)


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_declared_topics_are_the_ones_the_code_writes(service: str) -> None:
    written = set()
    for _, tree in _modules(service):
        for node in ast.walk(tree):
            called = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if called and node.func.id in EVENT_TOPICS:  # type: ignore[attr-defined]
                written.add(EVENT_TOPICS[node.func.id])  # type: ignore[attr-defined]
    assert written == set(_by_name(service).produces)


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_declared_topics_are_the_ones_the_consumers_subscribe_to(service: str) -> None:
    """Every `topics=` given to a consumer, evaluated in its module, is what is declared."""
    subscribed: set[str] = set()
    for dotted, tree in _modules(service):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "topics":
                    scope = vars(importlib.import_module(dotted))
                    value = eval(compile(ast.Expression(kw.value), dotted, "eval"), dict(scope))  # noqa: S307
                    if isinstance(value, str):
                        continue  # a parameter's default, not a subscription
                    subscribed |= set(value)
    assert subscribed == set(_by_name(service).consumes)


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_declared_calls_have_their_setting_and_their_path_in_the_code(service: str) -> None:
    interface = _by_name(service)
    settings_module = importlib.import_module(f"{PACKAGES[service]}.settings")
    fields = {
        f"FUNNEL_{name.upper()}"
        for cls in vars(settings_module).values()
        if isinstance(cls, type) and hasattr(cls, "model_fields")
        for name in cls.model_fields
    }
    source = "\n".join(p.read_text() for p in (ROOT / "services" / service / "src").rglob("*.py"))
    for call in interface.calls:
        assert call.setting in fields, call
        assert call.service in PACKAGES, call
        path = call.request.split(" ", 1)[1].split("{", 1)[0]
        assert path in source, f"{service} declares {call.request} but never asks for {path}"
