"""The billing-cycle convention of the `subscription` funnel (README, "Billing cycles").

`renewal_due` (an activity the billing system reports when a period's renewal comes up) moves a
customer from `purchase` or `repurchase` back to `re-evaluation`; `subscription_renewed` (or a
`purchase_completed`) moves it on to `repurchase`; `subscription_cancelled` loses it.
"""

from __future__ import annotations

from tracker_signals import captured, sig

from funnel_contracts.events import KNOWN_ACTIVITY_TYPES
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.moves.models.machine import Outcome, apply, capture
from stage_tracker.scoring.models.signals import Signal

SUB = default_funnels()["subscription"]


def run(*signals: Signal) -> Outcome:
    outcome = capture(SUB, captured(funnel_id="subscription"))
    moves = list(outcome.moves)
    for s in signals:
        outcome = apply(outcome.state, SUB, s)
        moves += outcome.moves
    return Outcome(outcome.state, tuple(moves), outcome.scored)


def stages(outcome: Outcome) -> list[str]:
    return [m.to_stage for m in outcome.moves]


def test_the_shipped_funnel_spells_the_cycle_with_renewal_due_and_subscription_renewed() -> None:
    rules = {
        stage.name: {(r.match.event, r.from_stages) for r in stage.enter_when}
        for stage in SUB.stages
    }
    assert ("renewal_due", ("purchase", "repurchase")) in rules["re-evaluation"]
    assert ("subscription_renewed", ("re-evaluation",)) in rules["repurchase"]
    assert ("purchase_completed", ("re-evaluation",)) in rules["repurchase"]
    # Known to the contracts: lead-intake takes them from billing systems as they are.
    assert {"renewal_due", "subscription_renewed", "subscription_cancelled"} <= set(
        KNOWN_ACTIVITY_TYPES
    )


def test_each_billing_period_goes_back_to_re_evaluation_and_on_to_repurchase() -> None:
    periods = [sig("purchase_completed", 1)]
    for month in range(1, 4):
        periods += [sig("renewal_due", 30 * month), sig("subscription_renewed", 30 * month + 2)]
    outcome = run(*periods)
    assert stages(outcome) == [
        "awareness",
        "purchase",
        *["re-evaluation", "repurchase"] * 3,
    ]
    assert [m.reason for m in outcome.moves[2:4]] == [
        "renewal_due",
        "subscription_renewed",
    ]


def test_a_renewal_paid_by_a_new_purchase_counts_as_repurchase() -> None:
    outcome = run(
        sig("purchase_completed", 1), sig("renewal_due", 30), sig("purchase_completed", 31)
    )
    assert stages(outcome)[-2:] == ["re-evaluation", "repurchase"]


def test_renewal_due_moves_only_customers_and_only_once_per_period() -> None:
    prospect = run(sig("pricing_viewed", 1), sig("renewal_due", 2))
    assert stages(prospect) == ["awareness", "evaluation"]  # not a customer: nothing to renew
    twice = run(sig("purchase_completed", 1), sig("renewal_due", 30), sig("renewal_due", 31))
    assert stages(twice) == ["awareness", "purchase", "re-evaluation"]  # a second reminder


def test_renewed_without_renewal_due_stays_and_backdated_renewal_due_never_moves_back() -> None:
    unannounced = run(sig("purchase_completed", 1), sig("subscription_renewed", 30))
    assert stages(unannounced) == ["awareness", "purchase"]  # report renewal_due first
    backdated = run(
        sig("purchase_completed", 1),
        sig("renewal_due", 30),
        sig("subscription_renewed", 31),
        sig("renewal_due", 20),  # older than the lead's entry into repurchase
    )
    assert stages(backdated)[-1] == "repurchase"


def test_cancelling_loses_the_customer_in_any_period() -> None:
    outcome = run(
        sig("purchase_completed", 1),
        sig("renewal_due", 30),
        sig("subscription_cancelled", 31),
    )
    assert [(m.to_stage, m.reason) for m in outcome.moves][-1] == ("lost", "cancelled")
