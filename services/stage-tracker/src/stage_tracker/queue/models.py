"""The work queue's query, its cursor, and each score group's key range (pure).

Leads sort by their score NOW (cooled by the wall clock, stage_tracker.scoring.models.decay).
The index cannot hold a value that changes with time, but within one group (funnel version,
half-life, fit, engagement sign) it is ordered by the decay key, and the key orders the group
by its score now at every instant. A page is the merge of one index range scan per group.
The total order is (score now, decay key, lead id), descending for `-score`: within a group
that is the index order even where floats make two scores equal. The cursor fixes the instant
of the first page, so every later page sorts the same scores (docs/decisions/0023).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from funnel_contracts.events import Temperature
from stage_tracker.scoring.models.decay import EVERY_KEY, KeyRange, keys_at_least, keys_at_most

Sort = Literal["-score", "score", "-entered_at", "entered_at"]
SORTS: tuple[Sort, ...] = ("-score", "score", "-entered_at", "entered_at")
MAX_LIMIT = 200


@dataclass(frozen=True)
class LeadFilter:
    funnel_id: str
    stage: str | None = None
    temperature: Temperature | None = None
    owner: str | None = None
    stalled: bool | None = None
    entered_after: datetime | None = None  # entered_at >= this
    entered_before: datetime | None = None  # entered_at < this
    test: bool = False  # True: the test leads alone; False: every lead but them


@dataclass(frozen=True)
class Cursor:
    """Where the previous page stopped, and the instant every page of the walk sorts at."""

    sort: Sort
    at: float  # epoch seconds: the first page's "now"
    lead_id: UUID
    score: float = 0.0  # score sorts: the last lead's score at `at`, and its decay key
    key: float = 0.0
    entered_at: datetime | None = None  # entry sorts

    def encode(self) -> str:
        body: dict[str, Any] = {"o": self.sort, "t": self.at, "id": str(self.lead_id)}
        if self.entered_at is not None:
            body["e"] = self.entered_at.isoformat()
        else:
            body |= {"s": self.score, "k": self.key}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class BadCursor(ValueError):
    """An `after` that is not a cursor this API gave for the same sort."""


def decode_cursor(text: str, sort: Sort) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("o") not in SORTS:
            raise BadCursor("not a cursor of this list")
        if body["o"] != sort:
            raise BadCursor(f"a cursor of sort {body['o']}, not {sort}")
        at = float(body["t"])
        lead_id = UUID(str(body["id"]))
        if not math.isfinite(at):
            raise BadCursor("not a cursor of this list")
        if sort.endswith("entered_at"):
            entered = datetime.fromisoformat(str(body["e"]))
            if entered.tzinfo is None:
                raise BadCursor("not a cursor of this list")
            return Cursor(sort, at, lead_id, entered_at=entered)
        score, key = float(body["s"]), float(body["k"])
        if math.isnan(score) or math.isnan(key) or math.isinf(score):
            raise BadCursor("not a cursor of this list")
        return Cursor(sort, at, lead_id, score=score, key=key)
    except BadCursor:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("not a cursor of this list") from None


@dataclass(frozen=True)
class Thresholds:
    """A funnel version's temperature bands."""

    warm: float
    hot: float

    def score_range(self, temperature: Temperature | None) -> tuple[float, float]:
        """[min, max) of the score now for a temperature (all scores for None)."""
        if temperature == "hot":
            return (self.hot, math.inf)
        if temperature == "warm":
            return (self.warm, self.hot)
        if temperature == "cold":
            return (-math.inf, self.warm)
        return (-math.inf, math.inf)


@dataclass(frozen=True)
class Group:
    """Leads whose score now is monotone in their decay key: one index range each."""

    version: int
    half_life: float
    fit: float
    sign: int


@dataclass(frozen=True)
class GroupScan:
    """One group's range scan: its key range (a superset) and the exact score bounds."""

    group: Group
    keys: KeyRange
    score_min: float
    score_max: float


def group_scan(
    group: Group,
    thresholds: Thresholds,
    temperature: Temperature | None,
    now: float,
    cursor: Cursor | None,
    descending: bool,
) -> GroupScan | None:
    """The key range of `group` that can hold the page's leads; None when none can."""
    g = group
    low, high = thresholds.score_range(temperature)
    keys = EVERY_KEY
    if low > -math.inf:
        keys &= keys_at_least(low, g.fit, g.sign, g.half_life, now)
    if high < math.inf:
        keys &= keys_at_most(high, g.fit, g.sign, g.half_life, now)
    if cursor is not None:
        after = keys_at_most if descending else keys_at_least
        keys &= after(cursor.score, g.fit, g.sign, g.half_life, now)
    if keys.empty:
        return None
    return GroupScan(group, keys, low, high)
