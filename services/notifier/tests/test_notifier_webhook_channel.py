"""The webhook channel against a real keep-alive HTTP server on 127.0.0.1: one client for
every call, and yet no connection carried from one call to the next (each call goes to the
address it has just checked)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from notifier.channels import Sent
from notifier.channels.webhook import WebhookChannel


class KeepAliveServer:
    """Answers 200 to every request and keeps the connection open for more."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    state = KeepAliveServer()
    listening = await asyncio.start_server(state._serve, "127.0.0.1", 0)
    state.port = listening.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        listening.close()


async def test_each_call_opens_its_own_connection_on_one_shared_client(
    server: KeepAliveServer,
) -> None:
    channel = WebhookChannel(secret="s", allowed_hosts=["127.0.0.1"], allow_private=True, timeout=5)
    url = f"http://127.0.0.1:{server.port}/hook"
    try:
        outcomes = [await channel.deliver(url, uuid4(), {"n": n}, event="test") for n in range(3)]
        client = channel._http._client
        assert client is not None
        await channel.deliver(url, uuid4(), {"n": 3}, event="test")
        assert channel._http._client is client  # built once, not per call
    finally:
        await channel.aclose()
    assert outcomes == [Sent()] * 3
    assert server.requests == 4
    assert server.connections == 4  # the server would have kept each one open
    assert channel._http._client is None
