"""reporting settings (FUNNEL_* environment variables)."""

from funnel_servicekit.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    service_name: str = "reporting"
    db_schema: str = "reporting"
    http_port: int = 8004
