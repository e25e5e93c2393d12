"""lead-intake settings (FUNNEL_* environment variables)."""

from limits import parse
from pydantic import Field, SecretStr, field_validator, model_validator

from funnel_servicekit.settings import ServiceSettings

# Outside production without FUNNEL_SEARCH_INDEX_KEY: a fixed key, so that a development
# database stays searchable across restarts. Production refuses to start without its own.
DEVELOPMENT_SEARCH_INDEX_KEY = b"funnel-development-search-index-key-not-secret"


class IntakeSettings(ServiceSettings):
    service_name: str = "lead-intake"
    db_schema: str = "intake"
    http_port: int = 8001
    # Intake sets no session state on pooled connections (its locks are transaction-level),
    # so it skips the reset query on every release: one round trip fewer per request.
    db_pool_reset_on_release: bool = False
    # Past this many requests in progress, answer 503 + Retry-After instead of queueing
    # (docs/decisions/0011): a queue of thousands of posts makes every post take seconds.
    # About three times the pool: a burst keeps every connection busy, and the queue in front
    # of them stays short (what waits, waits at most a few transactions' time).
    http_max_in_flight: int = Field(default=32, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest accepted post."""
    # Form posts share transactions (docs/decisions/0052): concurrent posts commit together,
    # one fsync for a group instead of one per post.
    group_commit_max_wait_seconds: float = Field(default=0.002, ge=0, le=1)
    """How long the first form post of a group waits for others to join it (0: no wait; posts
    queued behind a commit still go together)."""
    group_commit_max_size: int = Field(default=64, ge=1, le=64)
    """Form posts per group transaction at most (1: each post its own transaction, as before
    group commit)."""
    group_commit_groups_in_flight: int = Field(default=4, ge=1)
    """Group transactions open at once, each on its own pooled connection."""
    rate_limit_per_ip: str = "30/minute"
    """Posts per client IP and form, unless the form says."""
    rate_limit_per_form: str = "6000/minute"
    """Posts per form from everyone, unless the form says."""
    webhook_rate_limit_per_ip: str = "300/minute"
    """Webhook deliveries per source address, platform and form (ad platforms send from a few
    addresses; a guesser of keys from any)."""
    webhook_rate_limit_per_form: str = "6000/minute"
    """Webhook deliveries per platform and form."""
    form_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a replica reuses a form it read (0: never)."""
    idempotency_hours: float = Field(default=24, gt=0)
    """How long keys are kept."""
    max_activities_per_batch: int = Field(default=500, ge=1, le=5000)
    public_base_url: str | None = None
    """How browsers reach this service, for embed.js (else the request's)."""
    max_activity_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Imports of existing contacts (POST /v1/leads/import, CSV or JSON).
    import_max_rows: int = Field(default=100_000, ge=1)
    """Rows one import takes at most (more: 413)."""
    import_max_bytes: int = Field(default=128 * 1024 * 1024, ge=1024)
    """Largest import body (more: 413)."""
    import_inline_rows: int = Field(default=1000, ge=0)
    """Imports of at most this many rows are done before the answer; larger ones answer 202 at
    once and the import runner works through them."""
    import_batch_size: int = Field(default=500, ge=1, le=10_000)
    """Rows per transaction of an import."""
    import_poll_seconds: float = Field(default=1.0, gt=0)
    """How often the import runner looks for waiting rows."""
    # Funnels belong to stage-tracker: a form is saved only if its funnel is published there.
    tracker_url: str | None = None
    """stage-tracker's base URL; unset: forms are saved unchecked."""
    tracker_api_key: SecretStr | None = None
    """A stage-tracker key with leads:read, to read funnels."""
    tracker_timeout_seconds: float = Field(default=5.0, gt=0)

    # Ad platforms and webhooks: secrets come from the environment, never from the database.
    meta_app_secret: SecretStr | None = None
    """Signs X-Hub-Signature-256."""
    meta_verify_token: SecretStr | None = None
    """The GET handshake's token."""
    meta_access_token: SecretStr | None = None
    """Reads leads from Graph."""
    meta_graph_base_url: str = "https://graph.facebook.com/v21.0"
    meta_form_id: str = "meta-lead-ads"
    """The form Meta leads join."""
    meta_fetch_max_attempts: int = Field(default=50, ge=1)
    """Then left for operators."""
    meta_fetch_poll_seconds: float = Field(default=2.0, gt=0)
    typeform_secret: SecretStr | None = None
    google_ads_key: SecretStr | None = None
    webhook_hmac_secret: SecretStr | None = None
    """Signs generic webhooks (X-Funnel-Signature: t=<unix s>,v1=<hex>)."""

    # Keys the blind indexes that find people by email, phone or a name's prefix
    # (docs/decisions/0024). Never stored in the database; changing it needs
    # `python -m lead_intake index-people` to index everyone again.
    search_index_key: SecretStr | None = None
    """HMAC key of the people search index (32+ characters); required in production, a fixed
    development key otherwise."""

    def search_key(self) -> bytes:
        """The search index key's bytes (the development one when unset outside production)."""
        if self.search_index_key is None:
            return DEVELOPMENT_SEARCH_INDEX_KEY
        return self.search_index_key.get_secret_value().encode()

    @model_validator(mode="after")
    def _search_key_in_production(self) -> "IntakeSettings":
        key = self.search_index_key.get_secret_value() if self.search_index_key else ""
        if self.environment == "production" and len(key) < 32:
            raise ValueError("FUNNEL_SEARCH_INDEX_KEY must be a random key of 32+ characters")
        if self.search_index_key is not None and len(key) < 16:
            raise ValueError("FUNNEL_SEARCH_INDEX_KEY needs at least 16 characters")
        return self

    @field_validator(
        "rate_limit_per_ip",
        "rate_limit_per_form",
        "webhook_rate_limit_per_ip",
        "webhook_rate_limit_per_form",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        if value != "unlimited":
            parse(value)
        return value
