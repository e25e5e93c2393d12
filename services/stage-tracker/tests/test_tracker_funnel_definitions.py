"""Funnel definitions: the shipped defaults, and validation listing every error by line/field."""

import json

import pytest

from stage_tracker.funnels.models.defaults import default_funnels, default_source
from stage_tracker.funnels.models.parsing import InvalidDefinition, parse_definition


def test_the_three_defaults_follow_the_domain() -> None:
    funnels = default_funnels()
    assert funnels["digital-sales"].stage_names == (
        "awareness",
        "interest",
        "desire",
        "action",
        "loyalty",
    )
    assert funnels["subscription"].stage_names == (
        "awareness",
        "interest",
        "evaluation",
        "decision",
        "purchase",
        "re-evaluation",
        "repurchase",
    )
    assert funnels["b2b-sales-cycle"].stage_names == (
        "prospecting",
        "initial-contact",
        "qualification",
        "presentation",
        "objection-handling",
        "closing",
        "follow-up",
    )
    assert {f.version for f in funnels.values()} == {1}


def test_exits_sit_after_the_line() -> None:
    ds = default_funnels()["digital-sales"]
    assert [ds.position(s) for s in ("awareness", "loyalty", "stalled", "lost", "recycled")] == [
        0,
        4,
        5,
        6,
        7,
    ]


BROKEN = """\
id: Bad Id
name: n
stages:
  - name: a
    enter_when:
      - event: page_view
  - name: a
    stal_after_days: 3
    enter_when:
      - from: [nope]
  - name: lost
scoring:
  half_life_days: -1
  temperature: {warm: 50, hot: 10}
"""


def test_every_error_is_listed_with_its_line_and_field() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(BROKEN)
    got = {(e.field, e.line) for e in caught.value.errors}
    assert got == {
        ("id", 1),
        ("stages.0.enter_when.0", 6),  # the first stage needs `from`
        ("stages.1.name", 7),  # defined twice
        ("stages.1.stal_after_days", 8),  # unknown key
        ("stages.1.enter_when.0", 10),  # no condition
        ("stages.1.enter_when.0.from.0", 10),  # unknown stage
        ("stages.2.name", 11),  # an exit is not a line stage
        ("scoring.half_life_days", 13),
        ("scoring.temperature.hot", 14),
    }
    assert all(e.message for e in caught.value.errors)


def test_json_is_read_with_line_numbers_too() -> None:
    doc = json.loads(json.dumps({"id": "j", "name": "J", "stages": [{"name": "a"}]}))
    doc["stages"].append({"name": "b", "enter_when": [{"event": "x", "from": ["zzz"]}]})
    text = json.dumps(doc, indent=2)
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(text)
    [error] = caught.value.errors
    assert error.field == "stages.1.enter_when.0.from.0"
    assert text.splitlines()[error.line - 1].strip() == '"zzz"'


def test_text_that_is_not_yaml_names_its_line() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition("id: x\nstages: [a, b\nname: y\n")
    [error] = caught.value.errors
    assert error.field == "(document)"
    assert error.line == 3


def test_yes_and_no_stay_text() -> None:
    funnel = parse_definition(default_source("digital-sales"))
    assert funnel.scoring.fit[0].values[0] == "yes"


@pytest.mark.parametrize("funnel_id", sorted(default_funnels()))
def test_the_rules_a_signal_kind_can_satisfy_are_worked_out_once_in_order(funnel_id: str) -> None:
    """The machine reads only the rules a kind can satisfy (their event is the kind, or unset):
    every such rule, no other, in the definition's order, the same object on every call."""
    funnel = default_funnels()[funnel_id]
    kinds = {r.match.event for s in funnel.stages for r in s.enter_when}
    kinds |= {r.match.event for r in funnel.lost_when}
    for kind in [*sorted(k for k in kinds if k), "no-such-kind"]:
        expected = [
            (pos, stage, tuple(r for r in stage.enter_when if r.match.event in (None, kind)))
            for pos, stage in enumerate(funnel.stages)
        ]
        assert list(funnel.entry_rules_for(kind)) == [e for e in expected if e[2]]
        lost = [r for r in funnel.lost_when if r.match.event in (None, kind)]
        assert list(funnel.lost_rules_for(kind)) == lost
        assert funnel.entry_rules_for(kind) is funnel.entry_rules_for(kind)
    assert any(funnel.entry_rules_for(k) for k in kinds if k)  # the test reads real rules
