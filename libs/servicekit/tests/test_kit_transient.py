"""Which failures the inbox consumer retries in place and which ones count toward the DLQ."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError

from funnel_contracts import DecodeError, SchemaError
from funnel_servicekit.inbox import is_transient


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("reset"),
        ConnectionRefusedError(),
        ConnectionResetError(),
        TimeoutError(),
        OSError("network unreachable"),
        asyncpg.PostgresConnectionError("gone"),
        asyncpg.ConnectionDoesNotExistError("closed mid-query"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.TooManyConnectionsError("full"),
        asyncpg.SerializationError("could not serialize"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.AdminShutdownError("shutting down"),
        asyncpg.InterfaceError("pool is closing"),
        # asyncpg's answer to a session the server ended mid-transaction, now and then
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        RequestTimedOutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_infrastructure_failures_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad amount"),
        KeyError("stage"),
        TypeError("None is not a str"),
        RuntimeError("bug"),
        ZeroDivisionError(),
        DecodeError("not a CloudEvent"),
        SchemaError("missing to_stage"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.ForeignKeyViolationError("no such funnel"),
        asyncpg.CheckViolationError("negative"),
        asyncpg.NotNullViolationError("null email"),
        asyncpg.DataError("invalid input for query argument"),
        asyncpg.UndefinedTableError("no table"),
        asyncpg.PostgresSyntaxError("syntax"),
        # OSErrors about local files: a missing template will not appear by retrying.
        FileNotFoundError("templates/welcome.html"),
        PermissionError("templates/welcome.html"),
        IsADirectoryError("templates"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bad_events_and_bugs_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_subclasses_of_transient_errors_are_transient() -> None:
    class FlakyNetwork(ConnectionResetError):
        pass

    assert is_transient(FlakyNetwork())


def test_a_plain_oserror_from_a_failed_connect_is_transient() -> None:
    # asyncio raises a bare OSError (errno None) when every address of a host refuses.
    assert is_transient(OSError("Multiple exceptions: [Errno 111] Connect call failed"))
