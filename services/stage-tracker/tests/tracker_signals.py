"""Signal builders for the pure tests (not a test module)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from stage_tracker.scoring.models.signals import CAPTURED, Signal

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
_ids = count()


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def sig(kind: str, days: float = 0.0, event_id: str | None = None, **properties: object) -> Signal:
    answers = properties.pop("answers", {})
    return Signal(
        event_id or f"e{next(_ids)}",
        "funnel.activity.recorded.v1",
        kind,
        at(days),
        properties,  # type: ignore[arg-type]
        answers,  # type: ignore[arg-type]
    )


def captured(days: float = 0.0, funnel_id: str = "digital-sales", **answers: str) -> Signal:
    return Signal(
        f"cap{next(_ids)}", "funnel.lead.captured.v1", CAPTURED, at(days), {}, answers, funnel_id
    )
