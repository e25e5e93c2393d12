"""One httpx client for a process's or a loop's calls, made on first use and again after
`aclose`.

Building a client costs tens of milliseconds of CPU (it loads the CA bundle), so it is made
once; its owner closes it when it ends (a loop run again after a crash, an app started twice,
gets a new one). Used by the notifier's webhook and data-key calls and reporting's workspace
proxy.
"""

from __future__ import annotations

from typing import Any

import httpx


class ReopeningClient:
    def __init__(self, **options: Any) -> None:
        self._options = options  # httpx.AsyncClient's own keyword arguments
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**self._options)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
