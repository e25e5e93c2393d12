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
    topics.LEAD_EVENTS: "a person captured, updated, merged, erased",
    topics.ACTIVITY_EVENTS: "what a person did: page views, purchases, calls",
    topics.STAGE_EVENTS: "stage moves, scores and owners",
    topics.TOUCH_EVENTS: "touches sent, failed, opened, clicked; consent; sales tasks",
    topics.STAGE_COMMANDS: "moves and owner changes asked by people and by stall timers",
    topics.REPORT_EVENTS: "what reporting finds in the numbers: a funnel step leaking, recovering",
}


def event_types_of(topic: str) -> list[str]:
    """The event types the contracts put on `topic`, in registry order."""
    return [t for t, model in EVENT_MODELS.items() if model.topic == topic]


# The two parts of every service, each its own Deployment on Kubernetes: the API
# (FUNNEL_RUN_API) and the loops (FUNNEL_RUN_WORKERS: outbox relay, consumers, senders).
API = "api"
WORKER = "worker"
PARTS = (API, WORKER)


@dataclass(frozen=True)
class HttpCall:
    """A call one service makes to another's API, and the setting that says where.
    `made_by`: the parts whose code makes it (the network policies open it for those only)."""

    service: str
    request: str
    purpose: str
    setting: str
    made_by: tuple[str, ...] = (API,)


@dataclass(frozen=True)
class Connection:
    """A connection a service's code opens to something that is not one of the services:
    the destination is wherever `setting` points (a URL, a host, `host:port`, or a list of
    hosts where empty means any public host), on the port in `port_setting` or `port`.
    `when`: the setting that switches the code on (the connection is needed only where it
    is set)."""

    to: str
    purpose: str
    setting: str
    made_by: tuple[str, ...] = PARTS
    port_setting: str | None = None
    when: str | None = None
    # The port when the setting names hosts only (a URL's own port or scheme's wins).
    port: int | None = None


@dataclass(frozen=True)
class ServiceInterface:
    """What a service declares of its wiring (its `interface.py`)."""

    name: str
    port: int
    schema: str
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    calls: tuple[HttpCall, ...] = field(default=())
    connections: tuple[Connection, ...] = field(default=())
    # The API routes the internet reaches through the Ingress (public pages, posts, links).
    public_routes: tuple[str, ...] = field(default=())


# Connections every part of every service opens through the kit (funnel_servicekit): the
# asyncpg pool (db.py), the Kafka producer and consumers (kafka.py, inbox.py), and the
# OpenTelemetry exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set (telemetry.py).
KIT_CONNECTIONS: tuple[Connection, ...] = (
    Connection("postgresql", "each service's schema", "FUNNEL_DATABASE_URL"),
    # The schema owner's role, for the migrations only (the same database server).
    Connection(
        "postgresql",
        "migrations as the schema's owner",
        "FUNNEL_MIGRATION_DATABASE_URL",
        when="FUNNEL_MIGRATION_DATABASE_URL",
    ),
    Connection("kafka", "outbox relay, consumers, readiness", "FUNNEL_KAFKA_BOOTSTRAP_SERVERS"),
    Connection(
        "otlp",
        "traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        when="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
)


@dataclass(frozen=True)
class InboundPath:
    """A caller from outside the services: who, to which parts, on which port."""

    caller: str
    purpose: str
    parts: tuple[str, ...]
    port: str  # "http": the service's own port


# What reaches the services from outside them (the kit serves /metrics, /healthz and /readyz
# on every part; funnel_servicekit.service_app).
INBOUND_PATHS: tuple[InboundPath, ...] = (
    InboundPath("prometheus", "scrapes /metrics", PARTS, "http"),
    InboundPath("internal-clients", "teams' tools call the APIs with their keys", (API,), "http"),
    InboundPath("ingress", "the public_routes of a service behind the Ingress", (API,), "http"),
)

# Who else reaches Kafka: KEDA reads the consumer groups' lag (its kafka triggers), and the
# dead-letter redrive (funnel_servicekit.redrive, run as a one-off pod by the runbook).
KAFKA_CLIENTS_BESIDE_THE_SERVICES: tuple[str, ...] = ("keda", "redrive")


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
