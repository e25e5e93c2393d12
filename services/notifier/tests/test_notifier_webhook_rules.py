"""Webhook signatures, destinations and retries (pure)."""

import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest

from notifier.channels.webhook_rules import (
    RefusedDestination,
    check_addresses,
    check_host,
    is_permanent,
    retry_after_seconds,
    signature,
    verify,
)
from notifier.retry_policy import backoff_seconds


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"touch_id":"t"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", 1700000000, body) == f"v1={expected}"
    assert verify("s3cret", 1700000000, body, f"v1={expected}")
    assert not verify("s3cret", 1700000001, body, f"v1={expected}")


def test_only_allowed_hosts_are_called() -> None:
    allowed = ["hooks.example.com", "*.crm.example"]
    assert check_host("https://hooks.example.com/x", allowed) == "hooks.example.com"
    assert check_host("https://eu.crm.example/x", allowed) == "eu.crm.example"
    for url in ("https://evil.example/x", "https://crm.example.evil/x", "file:///etc/passwd",
                "https://user:pw@hooks.example.com/"):  # fmt: skip
        with pytest.raises(RefusedDestination):
            check_host(url, allowed)


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"]
)
def test_private_and_loopback_addresses_are_refused_unless_configured(ip: str) -> None:
    with pytest.raises(RefusedDestination):
        check_addresses([ip], allow_private=False)
    check_addresses([ip], allow_private=True)
    check_addresses(["93.184.216.34"], allow_private=False)


def test_4xx_is_not_retried_except_timeouts_and_rate_limits() -> None:
    assert is_permanent(400)
    assert is_permanent(404)
    assert is_permanent(410)
    assert not is_permanent(429)
    assert not is_permanent(408)
    assert not is_permanent(503)


def test_retry_after_is_read_as_seconds_or_a_date_and_honoured() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Sun, 01 Nov 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("soon") is None
    rng = random.Random(1)
    assert backoff_seconds(1, base=1, cap=60, retry_after=45, rng=rng) >= 45


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(n, base=2, cap=100, rng=rng) for n in range(1, 10)]
    assert 1 <= delays[0] <= 3
    assert 8 <= delays[3] <= 24
    assert all(d <= 150 for d in delays)
