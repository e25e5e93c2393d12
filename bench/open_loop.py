"""An open-loop HTTP load generator on raw asyncio streams: cheap enough to share two cores.

Each request has a scheduled send time (start + i / rate) and its latency is measured from that
time, so a slow server is not hidden by the generator waiting for it (no coordinated omission).
Requests go out on idle keep-alive connections; a new connection is opened when none is idle,
up to `max_connections` (past that, a request waits for one, and the wait counts as latency).
The requests are plain bytes built beforehand: httpx costs ~1 ms of CPU per request, which on
a two-core machine is taken from the server being measured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.common import percentile


@dataclass
class OpenLoopResult:
    rate_target: float
    sent: int
    elapsed_s: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # by exception type
    latencies_ms: list[float] = field(default_factory=list)  # of the 202 answers

    def summary(self) -> dict[str, Any]:
        accepted = len(self.latencies_ms)
        return {
            "rate_target": round(self.rate_target, 1),
            "rate_achieved": round(accepted / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "sent": self.sent,
            "accepted_202": accepted,
            "shed_503": self.statuses.get(503, 0),
            "other_statuses": {str(k): v for k, v in self.statuses.items() if k not in (202, 503)},
            "errors": dict(self.errors),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p90_ms": round(percentile(self.latencies_ms, 90), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else float("nan"),
        }


def post_bytes(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def open_loop(
    url: str,
    rate: float,
    seconds: float,
    body_for: Any,
    *,
    max_connections: int = 256,
    timeout: float = 60,
) -> OpenLoopResult:
    """Send `rate` posts per second for `seconds`; `body_for(i)` gives request i's JSON bytes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    total = int(rate * seconds)
    requests = [post_bytes(f"{host}:{port}", parts.path, body_for(i)) for i in range(total)]
    result = OpenLoopResult(rate, total, 0.0)
    # (reader, writer, when it went idle): uvicorn closes a keep-alive connection idle for 5 s,
    # so one idle for longer than IDLE_REUSE_S is closed here instead of reused.
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    slots = asyncio.Semaphore(max_connections)
    start = time.perf_counter()

    async def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with slots:
            conn = _fresh_idle(idle)
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                writer.write(requests[i])
                status, keep = await asyncio.wait_for(_read_response(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                result.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn[1].close()
                return
            done = time.perf_counter()
            result.statuses[status] += 1
            if status == 202:
                result.latencies_ms.append((done - scheduled) * 1000)
            if keep:
                idle.append((reader, writer, done))
            else:
                writer.close()

    await asyncio.gather(*(one(i) for i in range(total)))
    result.elapsed_s = time.perf_counter() - start
    for _, writer, _ in idle:
        writer.close()
    return result


IDLE_REUSE_S = 3.0


def _fresh_idle(
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """The most recently used idle connection, closing those idle too long to trust."""
    now = time.perf_counter()
    while idle:
        reader, writer, since = idle.pop()
        if now - since < IDLE_REUSE_S:
            return reader, writer
        writer.close()
    return None
