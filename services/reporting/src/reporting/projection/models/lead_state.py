"""What reporting remembers about one lead, and how each event changes it (pure).

The state is a set-like record of everything the lead did: applying an event twice, or two
events in either order, gives the same state. That is what makes the projections exact under
redelivery, late events and a rebuild that replays the topics in a different interleaving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from funnel_contracts import (
    ActivityRecorded,
    EventData,
    LeadErased,
    StageChanged,
    TouchClicked,
    TouchOpened,
    TouchSent,
    Utm,
)
from funnel_contracts.events import OFFLINE_ACTIVITY_TYPES
from funnel_contracts.lead_reader import LeadDetails, lead_details
from reporting.projection.models.stage_history import StageEntry, in_move_order

REFUND_ACTIVITY = "refund_issued"
CANCEL_ACTIVITY = "subscription_cancelled"
NO_CURRENCY = "XXX"  # ISO 4217's code for "no currency": an order reported without an amount


def utc(moment: datetime) -> datetime:
    """Events carry aware times; a naive one is read as UTC rather than the machine's zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Touchpoint(BaseModel):
    """Where a lead came from at one moment: UTM, form and landing page."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    form: str | None = None
    landing_page: str | None = None

    @classmethod
    def of(cls, at: datetime, utm: Utm, form: str | None, page: str | None) -> Touchpoint:
        return cls(
            at=utc(at),
            source=utm.source,
            medium=utm.medium,
            campaign=utm.campaign,
            form=form,
            landing_page=page,
        )

    @property
    def has_utm(self) -> bool:
        return any((self.source, self.medium, self.campaign))


class Money(BaseModel):
    """An order (purchase or renewal) or a refund."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["purchase", "renewal", "refund"]
    at: datetime
    amount: Decimal
    currency: str


class SentTouch(BaseModel):
    model_config = ConfigDict(frozen=True)

    playbook: str
    stage: str | None
    at: datetime


class OfflineTouch(BaseModel):
    """A call, meeting, event attended or note someone at the business logged: a touch whose
    stage is the one the lead was in at that moment."""

    model_config = ConfigDict(frozen=True)

    activity_type: str
    at: datetime


class LeadState(BaseModel):
    """Everything about one lead that any aggregate depends on; no contact details."""

    funnel_id: str | None = None
    first_touch: Touchpoint | None = None
    # Every touchpoint by key (submission id): the last touch is derived, order-independently.
    touchpoints: dict[str, Touchpoint] = Field(default_factory=dict)
    entries: list[StageEntry] = Field(default_factory=list)
    # The other lead's stage history, taken at a merge: it is the survivor's history until the
    # survivor's own first move arrives, whichever side of the merge that move is projected on.
    inherited: list[StageEntry] = Field(default_factory=list)
    money: dict[str, Money] = Field(default_factory=dict)
    interactions: dict[str, datetime] = Field(default_factory=dict)
    touches: dict[str, SentTouch] = Field(default_factory=dict)
    offline: dict[str, OfflineTouch] = Field(default_factory=dict)  # by activity id
    # Subscription cancellations by activity id (they end the lead's MRR).
    cancellations: dict[str, datetime] = Field(default_factory=dict)
    erased: bool = False
    # A test lead (an ad platform's test, or set by an admin key): counted in no report. A
    # person is one when every capture of theirs was a test: `real` remembers a capture that
    # was not, so a merge of a test lead and a real one counts the real person, whichever
    # order the captures and the merge arrive in.
    test: bool = False
    real: bool = False
    # Merged into another lead (the same person): it counts there, not here.
    merged_into: UUID | None = None

    def has_real_capture(self) -> bool:
        """A capture that was not a test was seen. A state stored before `real` was kept
        says so by being captured (a first touch) and not a test."""
        return self.real or (self.first_touch is not None and not self.test)

    def last_touch(self) -> Touchpoint | None:
        """The latest touchpoint that carried UTM (ties by key), else the first touch; its
        form and landing page the latest ones any touchpoint carried."""
        latest: tuple[tuple[datetime, str], Touchpoint] | None = None
        form: tuple[tuple[datetime, str], str] | None = None
        page: tuple[tuple[datetime, str], str] | None = None
        for key, tp in self.touchpoints.items():
            order = (tp.at, key)
            if (tp.source or tp.medium or tp.campaign) and (latest is None or order > latest[0]):
                latest = (order, tp)
            if tp.form and (form is None or order > form[0]):
                form = (order, tp.form)
            if tp.landing_page and (page is None or order > page[0]):
                page = (order, tp.landing_page)
        if latest is None:
            return self.first_touch
        tp = latest[1]
        last_form, last_page = form and form[1], page and page[1]
        if tp.form == last_form and tp.landing_page == last_page:
            return tp
        return tp.model_copy(update={"form": last_form, "landing_page": last_page})


def apply(state: LeadState, event: EventData, *, owned: bool = False) -> LeadState:
    """The state after one event; unchanged for events no aggregate depends on.

    `owned`: `state` is the caller's own copy, the result of an earlier `apply` that nobody
    else holds; it is then changed in place instead of copied (a lead's events of one batch
    cost one copy). The result is the same either way."""
    if state.erased or state.merged_into is not None:
        return state  # an erased person stays erased, a merged lead counts in its survivor
    if owned:
        s = state
    else:
        # The items are frozen models: copying the containers is enough, and far cheaper.
        s = state.model_copy(
            update={
                "touchpoints": dict(state.touchpoints),
                "entries": list(state.entries),
                "inherited": list(state.inherited),
                "money": dict(state.money),
                "interactions": dict(state.interactions),
                "touches": dict(state.touches),
                "offline": dict(state.offline),
                "cancellations": dict(state.cancellations),
            }
        )
    details = lead_details(event)  # captured or updated, v1 or v2: one shape
    if details is not None:
        _apply_details(s, details)
    elif isinstance(event, StageChanged):
        entry = StageEntry(
            funnel_id=event.funnel_id,
            stage=event.to_stage,
            position=event.to_stage_position,
            at=utc(event.changed_at),
            from_stage=event.from_stage,
        )
        if s.inherited and s.entries == s.inherited:
            s.entries = []  # the survivor's own first move: its own history from now on
        if entry not in s.entries:
            s.entries = in_move_order([*s.entries, entry])
    elif isinstance(event, ActivityRecorded):
        _apply_activity(s, event)
    elif isinstance(event, TouchSent):
        s.touches[str(event.touch_id)] = SentTouch(
            playbook=event.playbook, stage=event.stage, at=utc(event.sent_at)
        )
    elif isinstance(event, TouchOpened):
        s.interactions[f"opened:{event.touch_id}"] = utc(event.opened_at)
    elif isinstance(event, TouchClicked):
        s.interactions[f"clicked:{event.touch_id}:{event.url}"] = utc(event.clicked_at)
    elif isinstance(event, LeadErased):
        return LeadState(erased=True)
    return s


def _apply_details(s: LeadState, lead: LeadDetails) -> None:
    if lead.new:
        s.real = s.has_real_capture() or not lead.test
        s.test = lead.test and not s.real
        tp = Touchpoint.of(lead.at, lead.utm, lead.form_id, lead.landing_page)
        # The earlier first touch: a merged lead's capture may come to its survivor late.
        if s.first_touch is None or tp.at < s.first_touch.at:
            s.first_touch = tp
        s.funnel_id = s.funnel_id or lead.funnel_id
        s.touchpoints[str(lead.submission_id)] = tp
        s.interactions[f"submission:{lead.submission_id}"] = tp.at
        return
    key = str(lead.submission_id or f"update:{lead.at.isoformat()}")
    s.touchpoints[key] = Touchpoint.of(lead.at, lead.utm, lead.form_id, lead.landing_page)
    if lead.submission_id is not None:
        s.interactions[f"submission:{lead.submission_id}"] = utc(lead.at)
    s.funnel_id = s.funnel_id or lead.funnel_id


def _apply_activity(s: LeadState, event: ActivityRecorded) -> None:
    at = utc(event.occurred_at)
    amount = event.amount if event.amount is not None else Decimal(0)
    currency = event.currency or NO_CURRENCY
    if event.activity_type == "purchase_completed":
        # A purchase repeated under the same order id is the same order, counted once.
        key = f"order:{event.order_id}" if event.order_id else f"activity:{event.activity_id}"
        s.money[key] = Money(kind="purchase", at=at, amount=amount, currency=currency)
    elif event.activity_type == "subscription_renewed":
        s.money[f"renewal:{event.activity_id}"] = Money(
            kind="renewal", at=at, amount=amount, currency=currency
        )
    elif event.activity_type == REFUND_ACTIVITY:
        s.money[f"refund:{event.activity_id}"] = Money(
            kind="refund", at=at, amount=amount, currency=currency
        )
    else:
        s.interactions[f"activity:{event.activity_id}"] = at
        if event.activity_type == CANCEL_ACTIVITY:
            s.cancellations[str(event.activity_id)] = at
        if event.activity_type in OFFLINE_ACTIVITY_TYPES:
            s.offline[str(event.activity_id)] = OfflineTouch(
                activity_type=event.activity_type, at=at
            )


def fold(survivor: LeadState, other: LeadState, into: UUID) -> tuple[LeadState, LeadState]:
    """A merge: the survivor takes what the other lead did (its touchpoints, the earlier first
    touch, its money, interactions, touches and cancellations; its stage history only while
    the survivor has no move of its own: the tracker's `merged` move says where the person
    is); the other counts no more."""
    if survivor.erased or other.erased or other.merged_into is not None:
        return survivor, other
    touches = [t for t in (survivor.first_touch, other.first_touch) if t is not None]
    own_moves = bool(survivor.entries) and survivor.entries != survivor.inherited
    real = survivor.has_real_capture() or other.has_real_capture()
    merged = survivor.model_copy(
        update={
            "funnel_id": survivor.funnel_id or other.funnel_id,
            "first_touch": min(touches, key=lambda t: t.at) if touches else None,
            "touchpoints": {**other.touchpoints, **survivor.touchpoints},
            "entries": list(survivor.entries if own_moves else other.entries),
            "inherited": list(other.entries),
            "money": {**other.money, **survivor.money},
            "interactions": {**other.interactions, **survivor.interactions},
            "touches": {**other.touches, **survivor.touches},
            "offline": {**other.offline, **survivor.offline},
            "cancellations": {**other.cancellations, **survivor.cancellations},
            "real": real,
            "test": (survivor.test or other.test) and not real,
        }
    )
    return merged, other.model_copy(update={"merged_into": into})
