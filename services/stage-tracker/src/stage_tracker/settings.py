"""stage-tracker settings (FUNNEL_* environment variables)."""

from pydantic import Field

from funnel_servicekit.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    service_name: str = "stage-tracker"
    db_schema: str = "tracker"
    http_port: int = 8002
    stall_timer_poll_seconds: float = Field(
        default=30.0, gt=0, description="How often the stall timer loop looks for due leads."
    )
