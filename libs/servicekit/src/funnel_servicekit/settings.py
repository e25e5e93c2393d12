"""Settings shared by every service, read from FUNNEL_* environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_servicekit.db import RANDOM_PAGE_COST

UNSAFE_KEYS = {"changethis", "admin", "secret", "funnel", "password"}
MIN_KEY_LENGTH = 24


def _weak_key(key: str) -> bool:
    """Too short, too few distinct characters, or mostly placeholder words ("changethis"...).

    Every placeholder is shorter than 24 characters, so a length check alone lets a repeated
    one ("changethischangethischangethis") or a run of one character through.
    """
    rest = key.lower()
    for word in UNSAFE_KEYS:
        rest = rest.replace(word, "")
    return len(rest) < MIN_KEY_LENGTH or len(set(key)) < 8


class ApiKeyEntry(BaseModel):
    """One internal API key, stored hashed: `sha256` is the hex SHA-256 of the key."""

    name: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[str]


class KafkaClientSettings(BaseSettings):
    """How every Kafka client of the kit connects (funnel_servicekit.kafka.client_security):
    plaintext by default (the local stack), or TLS with SCRAM credentials (a cluster)."""

    model_config = SettingsConfigDict(
        env_prefix="FUNNEL_", extra="ignore", use_attribute_docstrings=True
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    """PEM file of the CA that signed the brokers' certificates."""
    kafka_linger_ms: int = Field(default=5, ge=0, le=1000)
    """How long a producer holds a record for others to join its batch (fewer, larger produce
    requests; an outbox batch is sent at once and forms its batches within this)."""
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=1, le=30000)
    """How long the broker may hold a consumer's fetch while fewer than fetch_min_bytes are
    there (with 1, a record ends the wait at once). Longer: fewer empty fetches while idle."""
    kafka_fetch_min_bytes: int = Field(default=1, ge=1, le=10_000_000)
    """How many bytes a consumer's fetch waits for (up to fetch_max_wait_ms) before the broker
    answers: above 1, records that come close together share a fetch, and each waits up to
    fetch_max_wait_ms more (docs/decisions/0079)."""


class ServiceSettings(KafkaClientSettings):
    """Base settings; each service subclasses it with its own fields and defaults."""

    model_config = SettingsConfigDict(
        env_prefix="FUNNEL_", extra="ignore", use_attribute_docstrings=True
    )

    service_name: str = "funnel-service"
    environment: Literal["development", "test", "production"] = "development"
    db_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]*$")
    database_url: str = "postgresql://funnel:funnel@127.0.0.1:5432/funnel"
    migration_database_url: SecretStr | None = None
    """The schema owner's DSN, for `migrate` and the admin commands only (never for `serve`).
    When set, the role of FUNNEL_DATABASE_URL gets data rights on this service's schema alone
    (docs/decisions/0044)."""
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_plan_cache_mode: Literal["force_generic_plan", "auto", "force_custom_plan"] = (
        "force_generic_plan"
    )
    """How PostgreSQL plans the service's prepared statements: once per connection
    (`force_generic_plan`), or PostgreSQL's own choice (`auto`), which plans a statement over
    short arrays again on every call (docs/decisions/0083)."""
    db_random_page_cost: float = Field(default=RANDOM_PAGE_COST, gt=0, le=100)
    """What PostgreSQL assumes an out-of-order page read costs in the service's sessions
    (1.0 a page read in sequence; PostgreSQL's default is 4, a disk's seek): 1.1 suits tables
    kept in memory or on SSD, and makes a batch's statements probe indexes rather than read
    whole tables of a few thousand rows (docs/decisions/0091)."""
    db_pool_reset_on_release: bool = False
    """Reset session state (asyncpg's RESET ALL, UNLISTEN *, advisory unlock, CLOSE ALL) when
    a connection goes back to the pool: a round trip and four statements per use. Off: no
    code of the kit or the services leaves session state on a pooled connection (locks and
    settings are transaction-level; the outbox relay unlocks its session lock itself), and
    an open transaction is rolled back either way (docs/decisions/0070)."""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    http_max_in_flight: int = Field(default=0, ge=0)
    """Requests served at once before 503 + Retry-After (0: no cap)."""
    admin_api_key: SecretStr | None = None
    admin_api_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The admin key's hex SHA-256 instead of the key itself: a service only checks it, so its
    pods need not carry the secret (decision 0044)."""
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    """JSON list of {"name", "sha256", "scopes"}; `funnel keys new` makes one."""
    run_api: bool = True
    run_workers: bool = True
    log_level: str = "INFO"
    outbox_batch_size: int = Field(default=200, ge=1, le=5000)
    outbox_poll_seconds: float = Field(default=2.0, gt=0)
    """The outbox relay's poll while its LISTEN connection is down."""
    outbox_listening_poll_seconds: float = Field(default=30.0, gt=0)
    """The outbox relay's poll while LISTEN is up: NOTIFY wakes it for every commit that wrote
    rows, so the timer is only a fallback (docs/decisions/0070)."""
    outbox_linger_ms: float = Field(default=5.0, ge=0, le=1000)
    """How long the outbox relay waits after a NOTIFY before it reads, so that the commits of
    that while go out in one read and one produce batch (0: it reads at once). Each event
    waits up to this long more (docs/decisions/0079)."""
    outbox_read_interval_ms: float = Field(default=25.0, ge=0, le=1000)
    """The shortest time from one of the relay's reads to the next that a NOTIFY starts: a
    relay woken again sooner waits until then, so that a busy moment's commits go out in
    fewer, larger reads and produce batches, while a commit after a quiet while waits only
    the linger. An event waits up to this long more on each relay it passes when its relay
    is busy (0: only the linger; docs/decisions/0092)."""
    consumer_commit_interval_seconds: float = Field(default=1.0, ge=0)
    """How often a consumer commits its processed offsets to Kafka (0: after every poll). A
    crash redelivers at most this much, which the inbox turns into no-ops; a stop commits
    what was processed (docs/decisions/0070)."""
    consumer_max_attempts: int = Field(default=3, ge=1)
    """Tries before the DLQ."""
    drain_seconds: float = Field(default=20.0, gt=0)
    transaction_guard: bool = False
    """Raise (and log) when an HTTP call, a Kafka send or SMTP happens while the task has a
    database transaction open; the test stacks turn it on."""
    gc_freeze_after_startup: bool = True
    """Freeze the objects alive after startup so that garbage collections skip them (full
    collections paused the event loop for ~60 ms without it)."""

    def owner_database_url(self) -> str:
        """Who creates and alters the schema: the owner when one is set, else the service."""
        if self.migration_database_url is not None:
            return self.migration_database_url.get_secret_value()
        return self.database_url

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> ServiceSettings:
        # Only an API serves keys: the workers and the migrations run without an admin key;
        # an API may hold the key's hash alone (it checks keys, it never sends the admin key).
        if (
            self.environment == "production"
            and self.run_api
            and (self.admin_api_key is not None or self.admin_api_key_sha256 is None)
        ):
            key = self.admin_api_key.get_secret_value() if self.admin_api_key else ""
            if _weak_key(key):
                raise ValueError("FUNNEL_ADMIN_API_KEY must be a random key of 24+ characters")
        return self
