"""What the workspace pages may ask of the other services (pure: the allow-list and its rules).

The pages are served by reporting and call the other services through it, same origin, with
the caller's own key: reporting adds no right of its own. Only the calls below pass; any
other method, path or query parameter is refused before anything is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The services the pages reach, by the name in `/workspace/api/{service}/...`.
SERVICES = ("tracker", "intake", "notifier")
# Request headers forwarded (the caller's key, its body's type, its precondition), and
# response headers given back; nothing else crosses.
REQUEST_HEADERS = ("authorization", "content-type", "if-match")
RESPONSE_HEADERS = ("etag", "retry-after", "location")

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = r"[A-Za-z0-9_-]{1,64}"


@dataclass(frozen=True)
class Allowed:
    """One call the pages make: a service, a method, a path pattern and its query names."""

    service: str
    method: str
    path: re.Pattern[str]
    query: frozenset[str] = frozenset()
    body: bool = False


def _allowed(service: str, method: str, path: str, *query: str) -> Allowed:
    return Allowed(
        service, method, re.compile(path), frozenset(query), body=method in {"POST", "PUT", "PATCH"}
    )


ALLOWED: tuple[Allowed, ...] = (
    # stage-tracker: a funnel's stages, the lead lists, a lead's journey, a move, an owner.
    _allowed("tracker", "GET", rf"/v1/funnels/{_ID}", "version"),
    _allowed(
        "tracker",
        "GET",
        r"/v1/leads",
        *("funnel_id", "stage", "temperature", "owner", "stalled", "sort", "limit", "after"),
    ),
    _allowed("tracker", "GET", rf"/v1/leads/{_UUID}/journey"),
    _allowed("tracker", "POST", rf"/v1/leads/{_UUID}/transitions"),
    _allowed("tracker", "PUT", rf"/v1/leads/{_UUID}/owner"),
    # lead-intake: the person (contact details only for a key with pii:read), offline touches.
    _allowed("intake", "GET", rf"/v1/leads/{_UUID}"),
    # People by lead ids (a page of the lead list named) or by the start of a name or email.
    _allowed("intake", "GET", r"/v1/leads", "id", "q", "limit", "after"),
    # A person's calls, meetings and notes with their words (sealed on the topics, 0054).
    _allowed("intake", "GET", rf"/v1/leads/{_UUID}/notes"),
    _allowed("intake", "POST", r"/v1/activities"),
    # notifier: a lead's tasks, and finishing one.
    _allowed("notifier", "GET", r"/v1/tasks", "lead_id", "status"),
    _allowed("notifier", "PATCH", rf"/v1/tasks/{_ID}"),
)


class NotAllowed(Exception):
    """A call outside the allow-list: `field` names what is at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def allowed(service: str, method: str, path: str, query_names: set[str]) -> Allowed:
    """The allow-list entry this call matches, or `NotAllowed` naming what does not."""
    if service not in SERVICES:
        raise NotAllowed("service", f"one of {', '.join(SERVICES)}")
    routes = [a for a in ALLOWED if a.service == service and a.path.fullmatch(path)]
    if not routes:
        raise NotAllowed("path", f"{service} {path[:200]!r} is not a workspace call")
    route = next((a for a in routes if a.method == method), None)
    if route is None:
        raise NotAllowed("method", f"{method} is not a workspace call on this path")
    unknown = sorted(query_names - route.query)
    if unknown:
        raise NotAllowed(unknown[0][:64], "not a query parameter of this workspace call")
    return route


@dataclass(frozen=True)
class UpstreamCall:
    """A call to forward: where, how, with which of the caller's headers and body."""

    base_url: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True)
class UpstreamAnswer:
    """What the service answered, as given back to the page."""

    status: int
    body: bytes
    headers: dict[str, str]


class Unreachable(Exception):
    """The service could not be reached (refused, reset, no answer in time)."""

    def __init__(self, service: str, timed_out: bool) -> None:
        super().__init__(service)
        self.service = service
        self.timed_out = timed_out
