"""No network call inside a database transaction: a guard that notices one.

A transaction held open across an HTTP call, a Kafka send or an SMTP exchange holds its locks
and its pooled connection for as long as the other side takes (a slow Graph API, a broker
away), and a retry of the call cannot be told apart from the first. Use cases make their
calls before they open a unit of work, or after it committed (docs/decisions/0040).

`arm()` makes that checkable: every asyncpg transaction started marks the running task until
it ends (tasks it starts are not marked), and the HTTP client (httpx), the Kafka producer
(aiokafka) and the SMTP client (aiosmtplib) raise `NetworkCallInTransaction` when called from
a marked task. Each violation
is also kept in `violations()` and logged, because a loop that retries any error would
otherwise swallow the exception: the tests fail on what was kept. Services arm it when
`FUNNEL_TRANSACTION_GUARD` is true (the test stacks set it); production leaves it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)
MARKER = "network call inside a database transaction"

# The ids of the transactions each task has open (savepoints included). Per task, not a
# context variable: a task started inside a transaction (which copies the context) is not
# inside it, and must not stay marked after it ended.
_open: weakref.WeakKeyDictionary[asyncio.Task[Any], list[int]] = weakref.WeakKeyDictionary()
_violations: list[str] = []
_armed = False


class NetworkCallInTransaction(RuntimeError):
    """A network call was made while the calling task had a database transaction open."""


def _task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def in_transaction() -> bool:
    task = _task()
    return task is not None and bool(_open.get(task))


def violations() -> list[str]:
    """What was called inside a transaction since the last `clear()`, with where from."""
    return list(_violations)


def clear() -> None:
    _violations.clear()


def check(what: str) -> None:
    """Raise (and keep) a violation when the running task has a transaction open."""
    if not _armed or not in_transaction():
        return
    where = "".join(traceback.format_stack(limit=12)[:-2])
    _violations.append(f"{what}\n{where}")
    log.error(MARKER, extra={"call": what})
    raise NetworkCallInTransaction(f"{what}: {MARKER}")


def _guarded(what: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        check(what)
        return await method(*args, **kwargs)

    guarded.__funnel_guarded__ = True  # type: ignore[attr-defined]
    return guarded


def _tracked_start(start: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(start)
    async def tracked(self: Any) -> None:
        await start(self)
        task = _task()
        if task is not None:
            _open.setdefault(task, []).append(id(self))

    return tracked


def _ended(transaction: Any) -> None:
    task = _task()
    held = _open.get(task) if task is not None else None
    if held is not None and id(transaction) in held:
        held.remove(id(transaction))


def _tracked_end(end: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Commit, rollback, and the context manager's exit: the last one also when the connection
    was lost (asyncpg then raises before it commits or rolls back, and the transaction is gone
    with the session)."""

    @functools.wraps(end)
    async def tracked(self: Any, *args: Any) -> Any:
        try:
            return await end(self, *args)
        finally:
            _ended(self)

    return tracked


def arm() -> None:
    """Install the guard in this process (idempotent)."""
    global _armed
    if _armed:
        return
    import aiokafka
    from asyncpg.transaction import Transaction

    tx: Any = Transaction
    tx.start = _tracked_start(tx.start)
    tx._Transaction__commit = _tracked_end(tx._Transaction__commit)
    tx._Transaction__rollback = _tracked_end(tx._Transaction__rollback)
    tx.__aexit__ = _tracked_end(tx.__aexit__)
    producer: Any = aiokafka.AIOKafkaProducer
    producer.send = _guarded("Kafka send (aiokafka)", producer.send)
    producer.send_batch = _guarded("Kafka send (aiokafka)", producer.send_batch)
    # The HTTP and SMTP clients are the services' own dependencies, not the kit's.
    with contextlib.suppress(ImportError):
        import httpx

        client: Any = httpx.AsyncClient
        client.send = _guarded("HTTP request (httpx)", client.send)
    with contextlib.suppress(ImportError):
        import aiosmtplib

        smtp: Any = aiosmtplib.SMTP
        smtp.connect = _guarded("SMTP connect (aiosmtplib)", smtp.connect)
        smtp.sendmail = _guarded("SMTP send (aiosmtplib)", smtp.sendmail)
    _armed = True
