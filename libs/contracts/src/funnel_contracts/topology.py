"""The platform's wiring as data: every topic with its events, and what each service declares
it produces, consumes and calls over HTTP. The README's tour is drawn from this
(`python -m funnel_contracts.topology`), and tests/consistency checks it against the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from funnel_contracts import topics
from funnel_contracts.events import EVENT_MODELS

TOPIC_DESCRIPTIONS: dict[str, str] = {
    topics.LEAD_EVENTS: "a person captured, updated, erased",
    topics.ACTIVITY_EVENTS: "what a person did: page views, purchases, calls",
    topics.STAGE_EVENTS: "stage moves, scores and owners",
    topics.TOUCH_EVENTS: "touches sent, failed, opened, clicked; consent; sales tasks",
    topics.STAGE_COMMANDS: "moves and owner changes asked by people and by stall timers",
    topics.REPORT_EVENTS: "what reporting finds in the numbers: a funnel step leaking, recovering",
}


def event_types_of(topic: str) -> list[str]:
    """The event types the contracts put on `topic`, in registry order."""
    return [t for t, model in EVENT_MODELS.items() if model.topic == topic]


@dataclass(frozen=True)
class HttpCall:
    """A call one service makes to another's API, and the setting that says where."""

    service: str
    request: str
    purpose: str
    setting: str


@dataclass(frozen=True)
class ServiceInterface:
    """What a service declares of its wiring (its `interface.py`)."""

    name: str
    port: int
    schema: str
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    calls: tuple[HttpCall, ...] = field(default=())


def _node(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def mermaid(services: Sequence[ServiceInterface]) -> str:
    """A Mermaid flowchart: services, topics (with their events), who writes and reads them,
    and the HTTP calls between services."""
    lines = ["flowchart LR"]
    lines.append('    web(["websites, ad platforms, teams"])')
    for s in services:
        lines.append(f'    {_node(s.name)}["{s.name} :{s.port}<br/>schema {s.schema}"]')
    used = sorted({t for s in services for t in (*s.produces, *s.consumes)})
    for t in used:
        events = "<br/>".join(e.removeprefix("funnel.") for e in event_types_of(t))
        lines.append(f'    {_node(t)}[["{t}<br/><small>{events}</small>"]]')
    lines.append(f"    web -- HTTP --> {_node(services[0].name)}")
    for s in services:
        for t in s.produces:
            lines.append(f"    {_node(s.name)} -- outbox --> {_node(t)}")
    for s in services:
        for t in s.consumes:
            lines.append(f"    {_node(t)} --> {_node(s.name)}")
    for s in services:
        for c in s.calls:
            lines.append(
                f'    {_node(s.name)} -. "{c.request}<br/>{c.purpose}" .-> {_node(c.service)}'
            )
    return "\n".join(lines) + "\n"


def tour(services: Sequence[ServiceInterface]) -> str:
    """The README's tour: the diagram, then one line a topic and one a call."""
    out = ["```mermaid", mermaid(services).rstrip("\n"), "```", ""]
    out.append("| topic | events | written by | read by |")
    out.append("|---|---|---|---|")
    for t in (*topics.ALL_TOPICS, *topics.COMMAND_TOPICS):
        writers = ", ".join(s.name for s in services if t in s.produces) or "-"
        readers = ", ".join(s.name for s in services if t in s.consumes) or "-"
        events = ", ".join(f"`{e}`" for e in event_types_of(t))
        out.append(f"| `{t}`: {TOPIC_DESCRIPTIONS[t]} | {events} | {writers} | {readers} |")
    out.append("")
    out.append("| HTTP call | from | to | what for | where it goes (setting) |")
    out.append("|---|---|---|---|---|")
    for s in services:
        for c in s.calls:
            out.append(f"| `{c.request}` | {s.name} | {c.service} | {c.purpose} | `{c.setting}` |")
    return "\n".join(out) + "\n"
