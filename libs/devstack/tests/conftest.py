"""Fixtures shared by the devstack tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel_devstack.kafka import default_cache_dir, ensure_kafka_jars


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """The Kafka runtime jars, downloaded once into the user cache and reused afterwards."""
    return ensure_kafka_jars(default_cache_dir())
