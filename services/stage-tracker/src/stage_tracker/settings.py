"""stage-tracker settings (FUNNEL_* environment variables)."""

from funnel_servicekit.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    service_name: str = "stage-tracker"
    db_schema: str = "tracker"
    http_port: int = 8002
