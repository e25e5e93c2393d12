"""notifier settings (FUNNEL_* environment variables)."""

from __future__ import annotations

from datetime import time, timedelta

from limits import parse as parse_limit
from pydantic import Field, SecretStr, field_validator, model_validator

from funnel_servicekit.settings import ServiceSettings
from notifier.frequency_caps import Cap

DEV_LINK_KEY = "development-only-link-signing-key"


def _default_caps() -> dict[str, list[Cap]]:
    # Marketing email: at most one a day and three a week per person.
    return {
        "email": [Cap(count=1, period=timedelta(days=1)), Cap(count=3, period=timedelta(days=7))]
    }


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    db_schema: str = "notifier"
    http_port: int = 8003
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_timeout_seconds: float = Field(default=15.0, gt=0)
    mail_from: str = "Funnel <hello@funnel.example>"
    message_id_domain: str = "funnel.example"
    public_base_url: str = "http://127.0.0.1:8003"
    """where tracking and unsubscribe links point"""
    link_signing_key: SecretStr = SecretStr(DEV_LINK_KEY)
    scheduler_poll_seconds: float = Field(default=0.5, gt=0)
    scheduler_listening_poll_seconds: float = Field(default=5.0, gt=0)
    """The touch sender's and the contact resolver's poll while their LISTEN connections are
    up (NOTIFY brings new touches and contacts; each sleeps until its next due row at most
    this long). While LISTEN is down they poll every `FUNNEL_SCHEDULER_POLL_SECONDS`."""
    consumer_batch_wait_ms: int = Field(default=500, ge=0, le=5000)
    """How long the broker may hold the notifier's event fetch for more events (0: a record
    ends the wait at once, as for the services on the report's path). The notifier is off
    that path: a touch half a second later buys polls that carry several leads each, so a
    fraction of a transaction per lead instead of two or three. 500, the kit's idle fetch
    wait (FUNNEL_KAFKA_FETCH_MAX_WAIT_MS): the idle consumer fetches no more often."""
    send_batch_size: int = Field(default=50, ge=1, le=1000)
    contact_key_requests: int = Field(default=4, ge=1, le=64)
    """Data keys the contact resolver asks lead-intake for at once: a burst of new leads must not
    take the capacity intake keeps for form posts (it sheds past FUNNEL_HTTP_MAX_IN_FLIGHT)."""
    touch_lease_seconds: int = Field(default=120, ge=1)
    touch_max_attempts: int = Field(default=8, ge=1)
    """Tries before a touch fails for good when the receiver answers with an error (a webhook's
    5xx or timeout); see touch_retry_for_seconds for temporary refusals."""
    touch_retry_for_seconds: float = Field(default=3 * 86400.0, gt=0)
    """How long after it fell due a touch keeps being retried while the mail server is
    unreachable or answers with a temporary refusal (4xx, a deferral at RCPT included), as
    mail servers queue mail; after that, and at least touch_max_attempts tries, it fails for
    good (touch.failed, replayable)."""
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    quiet_hours_start: time | None = time(21, 0)
    quiet_hours_end: time | None = time(8, 0)
    default_time_zone: str = "UTC"
    frequency_caps: dict[str, list[Cap]] = Field(default_factory=_default_caps)
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    webhook_allow_private_addresses: bool = False
    """allow loopback/private destinations (tests, on-premises)"""
    webhook_signing_secret: SecretStr = SecretStr("development-only-webhook-secret")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    sales_task_webhook_url: str | None = None
    tracking_rate_limit_per_ip: str = "300/minute"
    """public link hits (/t/*) per client IP, e.g. '300/minute', or 'unlimited'"""
    # lead-intake owns each person's data key; the notifier asks for it to open sealed events.
    intake_url: str = "http://127.0.0.1:8001"
    """lead-intake, for data keys"""
    intake_api_key: SecretStr | None = None
    """an intake API key with the pii:decrypt scope"""
    intake_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("tracking_rate_limit_per_ip")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value != "unlimited":
            parse_limit(value)  # ValueError names the bad notation
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> NotifierSettings:
        # The migrations (neither API nor loops) sign nothing and read no data keys.
        if self.environment == "production" and (self.run_api or self.run_workers):
            if self.link_signing_key.get_secret_value() == DEV_LINK_KEY:
                raise ValueError("set FUNNEL_LINK_SIGNING_KEY in production")
            if self.webhook_signing_secret.get_secret_value().startswith("development-only"):
                raise ValueError("set FUNNEL_WEBHOOK_SIGNING_SECRET in production")
            if self.run_workers and self.intake_api_key is None:
                raise ValueError("set FUNNEL_INTAKE_API_KEY (scope pii:decrypt) in production")
        return self
