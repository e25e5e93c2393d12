"""reporting settings (FUNNEL_* environment variables), and where its schema's migrations are."""

from pathlib import Path

from pydantic import Field, field_validator

from funnel_servicekit.settings import ServiceSettings
from reporting.domain.windows import WINDOW_DAYS

MIGRATIONS = Path(__file__).parent / "migrations"


class ReportingSettings(ServiceSettings):
    service_name: str = "reporting"
    db_schema: str = "reporting"
    http_port: int = 8004
    # The workspace pages reach the other services through reporting (same origin): where.
    tracker_url: str = "http://127.0.0.1:8002"
    """stage-tracker, for the workspace pages"""
    intake_url: str = "http://127.0.0.1:8001"
    """lead-intake, for the workspace pages"""
    notifier_url: str = "http://127.0.0.1:8003"
    """notifier, for the workspace pages"""
    workspace_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a workspace call may wait for its service."""
    snapshot_streams_max: int = Field(default=200, ge=1)
    """Open snapshot streams a process serves at most; one more is refused with 503 (a
    stream holds no load-shedding slot once it started, so this is their own cap)."""
    conversion_fold_seconds: float = Field(default=0.5, gt=0)
    """How often the projection's queued conversion deltas are folded into the quarter-hour
    tables and their rollups (reports add what is still queued)."""
    consumer_max_poll_records: int = Field(default=1000, ge=1, le=10000)
    """Records one fetch of the projection brings across all partitions: each partition's
    share is one set-based batch, so larger fetches cost fewer statements per event."""
    leak_check_seconds: float = Field(default=3600.0, ge=0)
    """How often the leak watch checks every funnel step; 0 turns the watch off (the leaks
    already found stay listed)."""
    leak_window_days: int = 7
    """Conversion window of the leak watch (one of the report grid's)."""
    leak_current_days: int = Field(default=7, ge=1)
    """Days of recent entry cohorts."""
    leak_baseline_days: int = Field(default=28, ge=1)
    """Days of the trailing baseline."""
    leak_min_entered: int = Field(default=100, ge=1)
    """Leads a step needs in each period to be tested."""
    leak_false_alarm_budget: float = Field(default=0.05, gt=0, lt=1)
    """Chance of any alert in a quarter on a funnel whose rates do not change."""
    workspace_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """The largest body a workspace call forwards."""

    @field_validator("leak_window_days")
    @classmethod
    def _on_the_grid(cls, days: int) -> int:
        """The leak watch reads the conversion aggregates: its window is one of theirs."""
        if days not in WINDOW_DAYS:
            raise ValueError(f"must be one of {', '.join(map(str, WINDOW_DAYS))}")
        return days
