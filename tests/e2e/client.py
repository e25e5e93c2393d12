"""What an e2e test needs to talk to a running stack: posts, reads, the mailbox, the DB."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import httpx

from funnel_devstack.mailbox import read_messages
from funnel_devstack.stack import Stack


class StackClient:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.auth = {"Authorization": f"Bearer {stack.admin_api_key}"}

    async def post_form(
        self, payload: Any, *, form_id: str = "demo", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.stack.url("lead-intake"), timeout=30) as c:
            return await c.post(f"/v1/forms/{form_id}/submissions", json=payload, headers=headers)

    async def post_many(self, payloads: list[dict[str, Any]], concurrency: int = 16) -> list[int]:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=self.stack.url("lead-intake"), timeout=30) as c:

            async def post(p: dict[str, Any]) -> int:
                async with limit:
                    r = await c.post("/v1/forms/demo/submissions", json=p)
                    return r.status_code

            return list(await asyncio.gather(*(post(p) for p in payloads)))

    async def get(self, service: str, path: str) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=self.stack.url(service), timeout=30, headers=self.auth
        ) as c:
            return await c.get(path)

    async def snapshot(self, funnel_id: str = "digital-sales") -> dict[str, Any]:
        response = await self.get("reporting", f"/v1/funnels/{funnel_id}/snapshot")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def snapshot_total(self) -> int:
        return int((await self.snapshot())["total"])

    def mail_recipients(self) -> Counter[str]:
        return Counter(str(m["To"]).lower() for m in read_messages(self.stack.mail_dir))

    async def mail_count(self) -> int:
        return sum(self.mail_recipients().values())

    async def sql(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.stack.postgres.dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()
