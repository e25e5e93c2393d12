"""Every event type. The version is part of the type: `funnel.lead.captured.v1`.

A published version never changes incompatibly: fields may be added only as optional,
none is removed, retyped or made required (libs/contracts/tests enforce it). Consumers ignore
fields they do not know, so producers can add optional fields first. A change that cannot be
made that way is a new version beside the old one (`funnel.lead.captured.v2` seals the
personal data); consumers read both while old records remain on the topics.
"""

from funnel_contracts.events.activity import (
    KNOWN_ACTIVITY_TYPES,
    OFFLINE_ACTIVITY_TYPES,
    ActivityRecorded,
)
from funnel_contracts.events.base import EVENT_MODELS, EventData, SchemaError, Utm, parse_event
from funnel_contracts.events.lead import (
    CAPTURE_SOURCES,
    Consent,
    LeadCaptured,
    LeadCapturedV2,
    LeadErased,
    LeadMerged,
    LeadUpdated,
    LeadUpdatedV2,
    Sealed,
)
from funnel_contracts.events.leak import LeakDetected, LeakResolved
from funnel_contracts.events.stage import (
    LeadOwnerChanged,
    LeadScored,
    OwnerAssigned,
    StageChanged,
    StageMoveRequested,
    Temperature,
)
from funnel_contracts.events.touch import (
    ConsentChanged,
    TaskStatus,
    TaskUpdated,
    TouchClicked,
    TouchFailed,
    TouchOpened,
    TouchSent,
)

__all__ = [
    "CAPTURE_SOURCES",
    "EVENT_MODELS",
    "KNOWN_ACTIVITY_TYPES",
    "OFFLINE_ACTIVITY_TYPES",
    "ActivityRecorded",
    "Consent",
    "ConsentChanged",
    "EventData",
    "LeadCaptured",
    "LeadCapturedV2",
    "LeadErased",
    "LeadMerged",
    "LeadOwnerChanged",
    "LeadScored",
    "LeadUpdated",
    "LeadUpdatedV2",
    "LeakDetected",
    "LeakResolved",
    "OwnerAssigned",
    "SchemaError",
    "Sealed",
    "StageChanged",
    "StageMoveRequested",
    "TaskStatus",
    "TaskUpdated",
    "Temperature",
    "TouchClicked",
    "TouchFailed",
    "TouchOpened",
    "TouchSent",
    "Utm",
    "parse_event",
]
