"""An imported contact's stage (pure): the capture carries it, the lead enters its funnel and
moves there at once (reason `imported`, dated when they entered it), and the stall timer
goes on from that time; an import filling in a known person's details is not them engaging."""

from __future__ import annotations

from uuid import uuid4

from tracker_signals import at

from funnel_contracts import LeadCapturedV2, LeadUpdatedV2, Sealed
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.machine import capture, on_timer, timer_due
from stage_tracker.scoring.models.signals import signal_of

DS = default_funnels()["digital-sales"]
SEALED = Sealed(alg="A256GCM", nonce="AAAAAAAAAAAAAAAA", ciphertext="AAAA")


def _imported(stage: str | None, entered_days: float | None = None) -> LeadCapturedV2:
    return LeadCapturedV2(
        lead_id=uuid4(),
        personal_data=SEALED,
        has_email=True,
        has_phone=False,
        submission_id=uuid4(),
        form_id="shop",
        funnel_id="digital-sales",
        captured_at=at(0),
        source="import",
        imported_stage=stage,
        stage_entered_at=at(entered_days) if entered_days is not None else None,
    )


def test_an_imported_stage_is_a_move_dated_when_they_entered_it() -> None:
    signal = signal_of(_imported("desire", 3), "import-1")
    assert signal is not None
    outcome = capture(DS, signal)
    assert [(m.from_stage, m.to_stage, m.reason, m.occurred_at) for m in outcome.moves] == [
        (None, "awareness", "captured", at(0)),
        ("awareness", "desire", "imported", at(3)),
    ]
    assert (outcome.state.stage, outcome.state.stage_entered_at) == ("desire", at(3))
    # desire stalls after 14 days without activity, counted from the entry into it
    assert timer_due(outcome.state, DS) == at(17)
    stalled = on_timer(outcome.state, DS, at(60))
    assert [(m.to_stage, m.occurred_at) for m in stalled.moves] == [("stalled", at(17))]


def test_a_stage_before_the_capture_is_dated_at_the_capture() -> None:
    signal = signal_of(_imported("interest", -5), "import-2")
    assert signal is not None
    [_, moved] = capture(DS, signal).moves
    assert (moved.to_stage, moved.occurred_at) == ("interest", at(0))


def test_the_entry_stage_an_exit_or_an_unknown_stage_moves_nothing_more() -> None:
    for stage in (None, "awareness", "lost", "stalled", "no-such-stage"):
        signal = signal_of(_imported(stage, 1), f"import-{stage}")
        assert signal is not None
        outcome = capture(DS, signal)
        assert [m.to_stage for m in outcome.moves] == ["awareness"], stage


def test_an_import_filling_in_a_known_person_carries_no_signal() -> None:
    update = LeadUpdatedV2(
        lead_id=uuid4(), personal_data=SEALED, has_email=True, has_phone=False,
        source="import", updated_at=at(1),
    )  # fmt: skip
    assert signal_of(update, "u1") is None
