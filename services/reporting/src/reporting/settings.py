"""reporting settings (FUNNEL_* environment variables), and where its schema's migrations are."""

from pathlib import Path

from funnel_servicekit.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class ReportingSettings(ServiceSettings):
    service_name: str = "reporting"
    db_schema: str = "reporting"
    http_port: int = 8004
