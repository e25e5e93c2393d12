"""lead-intake settings (FUNNEL_* environment variables)."""

from pydantic import Field

from funnel_servicekit.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "lead-intake"
    db_schema: str = "intake"
    http_port: int = 8001
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest accepted post.")
