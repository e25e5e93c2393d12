"""notifier settings (FUNNEL_* environment variables)."""

from pydantic import Field

from funnel_servicekit.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    db_schema: str = "notifier"
    http_port: int = 8003
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_timeout_seconds: float = Field(default=15.0, gt=0)
    mail_from: str = "Funnel <hello@funnel.example>"
    message_id_domain: str = "funnel.example"
    scheduler_poll_seconds: float = Field(default=0.5, gt=0)
    touch_lease_seconds: int = Field(default=120, ge=10)
    touch_max_attempts: int = Field(default=8, ge=1)
