"""stage-tracker settings (FUNNEL_* environment variables)."""

from pydantic import Field

from funnel_servicekit.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    service_name: str = "stage-tracker"
    db_schema: str = "tracker"
    http_port: int = 8002
    stall_timer_poll_seconds: float = Field(default=30.0, gt=0)
    """How often the stall timer loop looks for due leads."""
    consumer_max_poll_records: int = Field(default=1000, ge=1, le=10000)
    """Records one fetch brings across all partitions: each partition's share is one transaction
    with set-based reads and writes, so larger fetches cost fewer statements per event."""
    consumer_polls_in_flight: int = Field(default=2, ge=1, le=4)
    """Polls the consumer works on at once: the next poll is decoded, and its leads read and
    moved, while the one ahead is written and committed; each commits only after the one
    ahead, and waits for it on the leads both hold (docs/decisions/0094). 1: one at a time."""
