"""Funnel definition text (YAML or JSON) -> FunnelDefinition, or every error with line and field.

JSON is read by the same YAML reader (JSON is valid YAML), so both get line numbers. The reader
follows YAML 1.2 for booleans: `yes`/`no` stay text, as qualification answers often are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from stage_tracker.funnels.models.definition import (
    EXITS,
    EntryRule,
    FitRule,
    FunnelDefinition,
    LostRule,
    Match,
    Scoring,
    Stage,
)
from stage_tracker.funnels.models.document import EntryRuleDoc, FunnelDoc, MatchDoc

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class DefinitionError:
    field: str
    line: int | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "line": self.line, "message": self.message}


class InvalidDefinition(ValueError):
    """A definition with errors; `errors` lists every one found."""

    def __init__(self, errors: list[DefinitionError]) -> None:
        super().__init__("; ".join(f"{e.field} (line {e.line}): {e.message}" for e in errors))
        self.errors = errors


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _lines(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            out[(*path, name)] = key.start_mark.line + 1
            _lines(value, (*path, name), out)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def _field(path: Path) -> str:
    return ".".join(str(p) for p in path) or "(document)"


def _line(lines: dict[Path, int], path: Path) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def parse_definition(text: str, version: int = 1) -> FunnelDefinition:
    """The definition in `text`; InvalidDefinition listing every error otherwise."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        error = DefinitionError("(document)", line, f"not YAML/JSON: {problem}")
        raise InvalidDefinition([error]) from None
    if not isinstance(data, dict) or node is None:
        raise InvalidDefinition([DefinitionError("(document)", 1, "expected a mapping (object)")])
    lines: dict[Path, int] = {}
    _lines(node, (), lines)
    errors: list[DefinitionError] = []
    doc: FunnelDoc | None = None
    try:
        doc = FunnelDoc.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = tuple("from" if p == "from_" else p for p in e["loc"])
            errors.append(DefinitionError(_field(loc), _line(lines, loc), e["msg"]))
    errors += [
        DefinitionError(_field(path), _line(lines, path), message)
        for path, message in _semantic_errors(data)
    ]
    if errors or doc is None:
        raise InvalidDefinition(sorted(set(errors), key=lambda e: (e.line or 0, e.field)))
    return _definition(doc, version)


def _semantic_errors(data: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """What a schema cannot say: names that must exist, be unique, conditions that must be set.

    Runs on the raw data, defensively, so that these errors are listed together with the
    structural ones.
    """
    stages = data.get("stages")
    stages = stages if isinstance(stages, list) else []
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    seen: set[object] = set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        name = stage.get("name")
        if name in seen:
            yield ("stages", i, "name"), f"stage {name!r} is defined twice"
        seen.add(name)
        if name in EXITS:
            yield ("stages", i, "name"), f"{name!r} is an exit, not a stage in the line"
        rules = stage.get("enter_when")
        for j, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path: Path = ("stages", i, "enter_when", j)
            if not _has_condition(rule):
                yield path, "a rule needs a condition: event, score_at_least, answers or answered"
            sources = rule.get("from")
            if sources is None and i == 0:
                yield path, "the first stage is entered on capture; a rule here needs `from`"
            for k, source in enumerate(sources if isinstance(sources, list) else []):
                if source == name:
                    yield (*path, "from", k), "a stage cannot be entered from itself"
                elif source not in names:
                    yield (*path, "from", k), f"no stage {source!r} in this funnel"
    exits = data.get("exits")
    lost = exits.get("lost") if isinstance(exits, dict) else None
    when = lost.get("when") if isinstance(lost, dict) else None
    for j, rule in enumerate(when if isinstance(when, list) else []):
        if isinstance(rule, dict) and not _has_condition(rule):
            yield ("exits", "lost", "when", j), "a lost rule needs a condition"
    scoring = data.get("scoring")
    temperature = scoring.get("temperature") if isinstance(scoring, dict) else None
    if isinstance(temperature, dict):
        warm, hot = temperature.get("warm"), temperature.get("hot")
        if isinstance(warm, int | float) and isinstance(hot, int | float) and warm >= hot:
            yield ("scoring", "temperature", "hot"), "hot must be above warm"


def _has_condition(rule: dict[str, Any]) -> bool:
    return any(rule.get(k) not in (None, {}, []) for k in MatchDoc.model_fields)


def _match(doc: MatchDoc) -> Match:
    return Match(
        event=doc.event,
        where=dict(doc.where),
        score_at_least=doc.score_at_least,
        answers={k.lower(): tuple(v.strip().lower() for v in vs) for k, vs in doc.answers.items()},
        answered=tuple(a.lower() for a in doc.answered),
    )


def _entry(doc: EntryRuleDoc) -> EntryRule:
    return EntryRule(_match(doc), tuple(doc.from_) if doc.from_ is not None else None)


def _definition(doc: FunnelDoc, version: int) -> FunnelDefinition:
    s = doc.scoring
    return FunnelDefinition(
        id=doc.id,
        version=version,
        name=doc.name,
        stages=tuple(
            Stage(st.name, tuple(_entry(r) for r in st.enter_when), st.stall_after_days)
            for st in doc.stages
        ),
        lost_when=tuple(LostRule(_match(r), r.reason) for r in doc.exits.lost.when),
        lost_after_stalled_days=doc.exits.lost.after_stalled_days,
        scoring=Scoring(
            half_life_days=s.half_life_days,
            fit=tuple(
                FitRule(f.answer.lower(), tuple(v.strip().lower() for v in f.values), f.points)
                for f in s.fit
            ),
            engagement=dict(s.engagement),
            warm_at=s.temperature.warm,
            hot_at=s.temperature.hot,
        ),
        manual_backward=doc.manual_moves.allow_backward,
    )
