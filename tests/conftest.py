"""Fixtures for the integration, end-to-end and fault tiers: real PostgreSQL, real Kafka.

Everything is provisioned by the same code as `funnel up` (funnel_devstack.stack), in fresh
temporary folders on free ports, so tests never touch a developer's running stack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from funnel_devstack.stack import Stack, StackPorts
from funnel_servicekit import transaction_guard

ARTIFACTS = Path(__file__).parent / "artifacts"


def _fresh_root(prefix: str) -> Path:
    # Not pytest's tmp_path: PostgreSQL runs as its own OS user under root and must reach it.
    return Path(tempfile.mkdtemp(prefix=f"funnel-{prefix}-"))


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[Stack]:
    """PostgreSQL, Kafka and the mailbox for the integration tier (no services)."""
    stack = Stack(_fresh_root("it"), StackPorts.free(), partitions=3, fast_postgres=True)
    try:
        await stack.start_infrastructure()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture
async def fresh_dsn(infra: Stack) -> str:
    """A new, empty database on the session's PostgreSQL: a service's migrations start clean."""
    return await infra.postgres.create_database("t")


@pytest.fixture(scope="module")
async def module_infra() -> AsyncIterator[Stack]:
    """PostgreSQL, Kafka and the mailbox of the module's own: the fixed topic names are empty.

    For integration tests that run a service's real consumers on the contract topics.
    """
    stack = Stack(_fresh_root("mod"), StackPorts.free(), partitions=3, fast_postgres=True)
    try:
        await stack.start_infrastructure()
        from funnel_servicekit.kafka import ensure_topics

        await ensure_topics(stack.kafka_bootstrap, 3)
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)


async def start_stack(name: str, **service_env: str) -> Stack:
    """A whole stack (infrastructure, migrations, topics, four services) on free ports."""
    env = {"FUNNEL_OUTBOX_POLL_SECONDS": "1", **service_env}
    stack = Stack(
        _fresh_root(name), StackPorts.free(), partitions=6, fast_postgres=True, service_env=env
    )
    try:
        await stack.up()
    except BaseException:
        _keep_logs(stack, name)
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)
        raise
    return stack


def _keep_logs(stack: Stack, name: str) -> None:
    """Copy the stack's logs next to the tests so a failed CI run can be read afterwards."""
    target = ARTIFACTS / name
    target.mkdir(parents=True, exist_ok=True)
    for log in stack.logs.glob("*.log"):
        (target / log.name).write_bytes(log.read_bytes()[-2_000_000:])


def stop_stack(stack: Stack, name: str) -> None:
    _keep_logs(stack, name)
    stack.down()
    guarded = _network_calls_in_transactions(stack)
    shutil.rmtree(stack.root, ignore_errors=True)  # the logs were kept in tests/artifacts
    assert not guarded, f"{transaction_guard.MARKER}: {guarded[:5]}"


def _network_calls_in_transactions(stack: Stack) -> list[str]:
    """Lines the services' transaction guard logged (they run with it armed, see below)."""
    return [
        f"{log.name}: {line[:300]}"
        for log in stack.logs.glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if transaction_guard.MARKER in line
    ]


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("FUNNEL_ENVIRONMENT", "test")
    # Every service the tests start, in this process or as a child, has the guard armed: an
    # HTTP call, a Kafka send or SMTP inside a database transaction raises and is recorded.
    os.environ.setdefault("FUNNEL_TRANSACTION_GUARD", "true")
    transaction_guard.arm()


@pytest.fixture(autouse=True)
def _no_network_call_in_a_transaction() -> Iterator[None]:
    """Fails the test when anything in this process called out with a transaction open (a
    loop that retries every error would otherwise hide it)."""
    transaction_guard.clear()
    yield
    found = transaction_guard.violations()
    transaction_guard.clear()
    assert not found, f"{transaction_guard.MARKER}:\n" + "\n".join(found)
