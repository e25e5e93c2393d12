"""Finding free TCP ports and waiting for a port to accept connections."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time

# Below Linux's default ephemeral range (32768-60999): the ports the kernel hands to outgoing
# connections (a service's own clients of Kafka and PostgreSQL) never land here, and no two
# calls in this process return the same one; so a port chosen here is still free when the
# server it was chosen for binds it a few seconds later.
_RANGE = (20000, 32000)
_given: set[int] = set()
_random = random.SystemRandom()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now and that this process never gave out."""
    for _ in range(1000):
        port = _random.randrange(*_RANGE)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {_RANGE} after 1000 tries")


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return whether a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not port_is_open(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:.0f}s")
        time.sleep(0.1)


async def port_is_open_async(host: str, port: int, connect_timeout: float = 0.5) -> bool:
    """Async twin of :func:`port_is_open`."""
    try:
        async with asyncio.timeout(connect_timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
