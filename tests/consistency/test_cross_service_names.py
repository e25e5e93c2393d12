"""Names one service relies on that another defines: a rename on one side fails here first."""

from notifier.playbooks.catalog import default_playbooks
from reporting.domain.exits import EXITS as REPORTING_EXITS
from stage_tracker.funnels.models.defaults import default_funnels
from stage_tracker.funnels.models.definition import EXITS as TRACKER_EXITS


def test_every_stage_a_shipped_playbook_waits_for_exists_in_a_default_funnel() -> None:
    stages = {name for funnel in default_funnels().values() for name in funnel.stage_names}
    for playbook_id, playbook in default_playbooks().items():
        wanted = set(getattr(playbook.trigger, "stages", ()))
        assert wanted <= stages, f"{playbook_id} waits for unknown stages {wanted - stages}"


def test_every_activity_a_shipped_playbook_names_is_one_intake_emits() -> None:
    for playbook_id, playbook in default_playbooks().items():
        assert playbook.unknown_activity_types() == [], playbook_id


def test_reporting_leaves_out_of_default_steps_exactly_the_exits_the_tracker_makes() -> None:
    assert REPORTING_EXITS == TRACKER_EXITS
