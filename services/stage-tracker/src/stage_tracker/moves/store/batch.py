"""The leads one transaction touches: read in a few queries, changed in memory, written at once.

The consumer hands it a whole partition batch (up to a few hundred events); a manual move and
the stall timer use it for one lead or a page of leads. Every event still goes through the pure
machine one at a time, in order, against the state the previous event left: only the reads
and writes are set-based (about ten statements per batch instead of about ten per event).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from funnel_contracts import EventData
from funnel_servicekit.outbox import OutboxRows, enqueue_rows, outbox_record
from funnel_servicekit.telemetry import UnrecordedParent
from funnel_servicekit.unit_of_work import UnitOfWork
from stage_tracker.funnels.models.definition import FunnelDefinition
from stage_tracker.moves.models.events import TOPIC, outcome_event_values, outcome_events
from stage_tracker.moves.models.machine import LeadState, Move, Outcome, timer_due
from stage_tracker.moves.store import leads as store
from stage_tracker.scoring.models.decay import half_life_seconds
from stage_tracker.scoring.models.signals import Signal


@dataclass
class LeadBatch:
    uow: UnitOfWork
    states: dict[UUID, LeadState]
    waiting: dict[UUID, dict[str, Signal]]  # signals of leads not captured yet, by event id
    erased: set[UUID]
    published: str = ""  # a stamp of the published funnel versions when the leads were read
    _saved: dict[UUID, tuple[LeadState, datetime | None, float]] = field(default_factory=dict)
    _moves: list[tuple[UUID, Move]] = field(default_factory=list)
    _signals: dict[tuple[UUID, str], tuple[Signal, float, bool]] = field(default_factory=dict)
    _newly_erased: dict[UUID, datetime] = field(default_factory=dict)
    _tests: set[UUID] = field(default_factory=set)  # test leads captured in this batch
    _merged: list[tuple[UUID, UUID, datetime]] = field(default_factory=list)  # survivor, other
    _outbox: OutboxRows = field(default_factory=OutboxRows)
    # The trace headers of the event being applied when no span is recorded (see `tracing`):
    # what it emits carries a child of that trace, made without spans. None: spans as usual.
    _parent_trace: Mapping[str, str] | None = None
    _parent: UnrecordedParent | None = None  # `_parent_trace` read, at its first emit

    @classmethod
    async def load(
        cls, uow: UnitOfWork, lead_ids: Collection[UUID], *, lock: bool = True
    ) -> LeadBatch:
        """The leads' states, locked for this transaction (`lock=False`: rows already held)."""
        conn = uow.conn
        if lock:
            await store.lock_leads(conn, lead_ids)
        states, pending, erased, published = await store.load_states(conn, lead_ids)
        waiting = {lead: {s.event_id: s for s in signals} for lead, signals in pending.items()}
        return cls(uow, states, waiting, erased, published)

    def state(self, lead_id: UUID) -> LeadState | None:
        return self.states.get(lead_id)

    def pending(self, lead_id: UUID) -> list[Signal]:
        return list(self.waiting.get(lead_id, {}).values())

    def record_signal(self, lead_id: UUID, signal: Signal, points: float, *, applied: bool) -> None:
        self._signals[(lead_id, signal.event_id)] = (signal, points, applied)
        if applied:
            self.waiting.get(lead_id, {}).pop(signal.event_id, None)
        else:
            self.waiting.setdefault(lead_id, {})[signal.event_id] = signal

    def save(self, lead_id: UUID, outcome: Outcome, funnel: FunnelDefinition) -> None:
        """The lead's new state (seen by the next event of the batch), its moves and events."""
        self.states[lead_id] = outcome.state
        half_life = half_life_seconds(funnel.scoring.half_life_days)
        self._saved[lead_id] = (outcome.state, timer_due(outcome.state, funnel), half_life)
        self._moves += [(lead_id, m) for m in outcome.moves]
        if not outcome.moves and outcome.scored is None:
            return
        subject = str(lead_id)
        values = outcome_event_values(subject, outcome)
        if values is None:
            for event in outcome_events(lead_id, outcome):
                self.emit(event)
            return
        source, trace = self.uow.outbox.source, self._trace
        for event_type, value in values:
            # The outbox row in one step: the value by the event's template, the headers as text.
            self._outbox.add_json(event_type, TOPIC, subject, value, source=source, trace=trace())

    def park(self, lead_id: UUID, funnel: FunnelDefinition) -> None:
        """A lead merged into another: kept as it is, its stall timer stopped."""
        state = self.states.get(lead_id)
        if state is not None:
            half_life = half_life_seconds(funnel.scoring.half_life_days)
            self._saved[lead_id] = (state, None, half_life)

    def tracing(self, parent: Mapping[str, str] | None) -> None:
        """What is emitted from now on carries a child of `parent` (an event's trace headers)
        made without spans, for a consumer that records none; None: the current span's."""
        self._parent_trace = parent
        self._parent = None

    def _trace(self) -> dict[str, str] | None:
        if self._parent_trace is None:
            return None
        if self._parent is None:  # read once per consumed event, for all it emits
            self._parent = UnrecordedParent.of(self._parent_trace)
        return self._parent.child_headers()

    def emit(self, event: EventData, *, event_id: str | None = None) -> None:
        """Encode an event for the outbox now (in the current span: it carries its trace);
        written at the flush."""
        record = outbox_record(
            event, source=self.uow.outbox.source, event_id=event_id, trace=self._trace()
        )
        self._outbox.add(record)

    def mark_test(self, lead_id: UUID) -> None:
        """A test lead's capture: the work queue leaves it out (decision 0032)."""
        self._tests.add(lead_id)

    def merged(self, survivor: UUID, other: UUID, at: datetime) -> None:
        """A merge: the other leaves the work queue; the survivor stays a test lead only when
        the other was one too."""
        self._merged.append((survivor, other, at))

    def erase(self, lead_id: UUID, at: datetime) -> None:
        self.erased.add(lead_id)
        self.states.pop(lead_id, None)
        self.waiting.pop(lead_id, None)
        self._newly_erased.setdefault(lead_id, at)

    async def flush(self) -> None:
        """Write everything, set-based, in the unit of work's transaction."""
        conn = self.uow.conn
        gone = self._newly_erased
        if gone:
            await store.erase(conn, gone)
        states = [(lead, *saved) for lead, saved in self._saved.items() if lead not in gone]
        moves = [(lead, m) for lead, m in self._moves if lead not in gone]
        signals = [
            (lead, signal, points, applied)
            for (lead, _), (signal, points, applied) in self._signals.items()
            if lead not in gone
        ]
        tests = [lead for lead in self._tests if lead not in gone]
        # States, transitions, signals and test marks: one statement (decision 0077).
        await store.write_leads(conn, states, moves, signals, tests)
        merged = [m for m in self._merged if m[0] not in gone and m[1] not in gone]
        if merged:  # after the test marks: the merge reads them
            await store.record_merges(conn, merged)
        await enqueue_rows(conn, self.uow.outbox.schema, self._outbox)
