"""Topic names. Services import these; they never spell a topic as a string literal."""

from typing import Final

LEAD_EVENTS: Final = "funnel.lead-events"
ACTIVITY_EVENTS: Final = "funnel.activity-events"
STAGE_EVENTS: Final = "funnel.stage-events"
TOUCH_EVENTS: Final = "funnel.touch-events"
# stage-tracker's own input log: moves by people and by the stall timer, so that a replay of
# the topics rebuilds them too. Only stage-tracker reads it.
STAGE_COMMANDS: Final = "funnel.stage-commands"
# What reporting finds in the numbers (a funnel step leaking, and recovering).
REPORT_EVENTS: Final = "funnel.report-events"

ALL_TOPICS: Final = (LEAD_EVENTS, ACTIVITY_EVENTS, STAGE_EVENTS, TOUCH_EVENTS, REPORT_EVENTS)
# The topics about people (reporting's projection reads these).
PEOPLE_TOPICS: Final = (LEAD_EVENTS, ACTIVITY_EVENTS, STAGE_EVENTS, TOUCH_EVENTS)
# Topics one service writes for itself; not part of the events every consumer may read.
COMMAND_TOPICS: Final = (STAGE_COMMANDS,)

DEAD_LETTER_SUFFIX: Final = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic that holds the poison messages of `topic`."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def all_topics_with_dead_letters() -> list[str]:
    """Every topic the platform needs, dead-letter topics included."""
    return [
        t for topic in (*ALL_TOPICS, *COMMAND_TOPICS) for t in (topic, dead_letter_topic(topic))
    ]
