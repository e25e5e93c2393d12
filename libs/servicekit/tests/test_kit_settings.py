"""Shared settings: production refuses a guessable admin key; other environments allow any."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from pydantic import ValidationError

from funnel_servicekit.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _no_funnel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FUNNEL_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "changethis",
        "admin",
        "short-but-random-8f3a",  # 21 characters
        "changethischangethischangethis",  # a placeholder, repeated to 30 characters
        "ADMINADMINADMINADMINADMINADMIN",
        "a" * 40,
        "abababababababababababababab",
        " " * 32,
    ],
)
def test_production_refuses_an_unsafe_admin_key(key: str | None) -> None:
    with pytest.raises(ValidationError, match="FUNNEL_ADMIN_API_KEY"):
        ServiceSettings(environment="production", admin_api_key=key)


def test_production_refuses_an_unsafe_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUNNEL_ENVIRONMENT", "production")
    monkeypatch.setenv("FUNNEL_ADMIN_API_KEY", "changethis")
    with pytest.raises(ValidationError, match="FUNNEL_ADMIN_API_KEY"):
        ServiceSettings()


def test_production_accepts_a_random_key() -> None:
    key = secrets.token_urlsafe(24)
    settings = ServiceSettings(environment="production", admin_api_key=key)
    assert settings.admin_api_key is not None
    assert settings.admin_api_key.get_secret_value() == key
    assert key not in repr(settings)  # a SecretStr never prints


def test_a_random_key_with_a_product_prefix_is_accepted() -> None:
    key = "funnel-prod-" + secrets.token_urlsafe(24)
    assert ServiceSettings(environment="production", admin_api_key=key).admin_api_key


@pytest.mark.parametrize("environment", ["development", "test"])
def test_other_environments_allow_a_weak_or_missing_key(environment: str) -> None:
    assert ServiceSettings(environment=environment, admin_api_key="changethis").admin_api_key
    assert ServiceSettings(environment=environment).admin_api_key is None


def test_env_vars_are_read_with_the_funnel_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_DB_SCHEMA", "intake")
    monkeypatch.setenv("FUNNEL_CONSUMER_MAX_ATTEMPTS", "5")
    settings = ServiceSettings()
    assert settings.db_schema == "intake"
    assert settings.consumer_max_attempts == 5


@pytest.mark.parametrize("schema", ["Intake", "in-take", 'x"; DROP'])
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(db_schema=schema)


def test_workers_and_migrations_run_without_an_admin_key_in_production() -> None:
    assert ServiceSettings(environment="production", run_api=False).admin_api_key is None
    with pytest.raises(ValidationError, match="FUNNEL_ADMIN_API_KEY"):
        ServiceSettings(environment="production", run_api=True, run_workers=False)


async def test_kafka_clients_are_plaintext_by_default_and_tls_with_scram_when_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    import ssl

    from funnel_servicekit.kafka import client_security

    assert client_security() == {"security_protocol": "PLAINTEXT"}
    monkeypatch.setenv("FUNNEL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValueError, match="FUNNEL_KAFKA_SASL_USERNAME"):
        client_security()
    assert ServiceSettings().kafka_security_protocol == "SASL_SSL"  # the migrations start
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_USERNAME", "stage-tracker")
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_PASSWORD", "s3cret-from-strimzi")
    options = client_security()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "stage-tracker"
    assert options["sasl_plain_password"] == "s3cret-from-strimzi"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    # aiokafka takes them as they are (its constructors check protocol and mechanism).
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from funnel_servicekit.kafka import create_producer

    producer = create_producer("broker:9093", "test")
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
    AIOKafkaAdminClient(bootstrap_servers="broker:9093", **options)
    AIOKafkaConsumer(bootstrap_servers="broker:9093", **options)
    # The service's settings carry the same fields, so that a bad value stops the start.
    settings = ServiceSettings()
    assert settings.kafka_sasl_username == "stage-tracker"
    assert client_security(settings)["sasl_plain_username"] == "stage-tracker"


def test_production_accepts_the_admin_key_as_a_hash_alone() -> None:
    """A pod may carry only the hash (it checks keys, it never sends the admin key)."""
    digest = hashlib.sha256(secrets.token_urlsafe(24).encode()).hexdigest()
    settings = ServiceSettings(environment="production", admin_api_key_sha256=digest)
    assert (settings.admin_api_key, settings.admin_api_key_sha256) == (None, digest)
    with pytest.raises(ValidationError, match="admin_api_key_sha256"):
        ServiceSettings(environment="production", admin_api_key_sha256="not-a-hash")


def test_fetch_min_bytes_and_the_relays_linger_are_read_and_have_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By default a record ends a fetch at once and the relay reads 5 ms after a NOTIFY
    (decision 0079), and no sooner than 25 ms after its last read (decision 0092);
    FUNNEL_KAFKA_FETCH_MIN_BYTES, FUNNEL_OUTBOX_LINGER_MS and FUNNEL_OUTBOX_READ_INTERVAL_MS
    change that."""
    from funnel_servicekit.kafka import consumer_tuning

    default = ServiceSettings()
    assert consumer_tuning(default) == {"fetch_max_wait_ms": 500, "fetch_min_bytes": 1}
    assert default.outbox_linger_ms == 5
    assert default.outbox_read_interval_ms == 25
    monkeypatch.setenv("FUNNEL_KAFKA_FETCH_MIN_BYTES", "4096")
    monkeypatch.setenv("FUNNEL_KAFKA_FETCH_MAX_WAIT_MS", "20")
    monkeypatch.setenv("FUNNEL_OUTBOX_LINGER_MS", "0")
    monkeypatch.setenv("FUNNEL_OUTBOX_READ_INTERVAL_MS", "0")
    tuned = ServiceSettings()
    assert consumer_tuning(tuned) == {"fetch_max_wait_ms": 20, "fetch_min_bytes": 4096}
    assert consumer_tuning() == {"fetch_max_wait_ms": 20, "fetch_min_bytes": 4096}
    assert tuned.outbox_linger_ms == 0
    assert tuned.outbox_read_interval_ms == 0
    monkeypatch.setenv("FUNNEL_KAFKA_FETCH_MIN_BYTES", "0")
    with pytest.raises(ValidationError, match="kafka_fetch_min_bytes"):
        ServiceSettings()
