"""Load shedding: past max_in_flight requests, a 503 problem with Retry-After, at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from funnel_servicekit.load_shedding import SHED, LoadSheddingMiddleware
from funnel_servicekit.settings import ServiceSettings


class _SlowApp:
    """Answers 202 once `release` is set; counts the requests that reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reached = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _call(app: Any, path: str = "/v1/forms/f/submissions") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await app(scope, receive, send)
    return sent


async def test_requests_past_the_cap_get_503_with_retry_after_and_the_rest_are_served() -> None:
    inner = _SlowApp()
    app = LoadSheddingMiddleware(inner, max_in_flight=3, retry_after_seconds=2)
    shed_before = SHED.labels("POST")._value.get()
    held = [asyncio.create_task(_call(app)) for _ in range(3)]
    await asyncio.sleep(0)  # let the three reach the slow app
    assert app.in_flight == 3

    refused = await _call(app)

    assert refused[0]["status"] == 503
    headers = dict(refused[0]["headers"])
    assert headers[b"retry-after"] == b"2"
    assert headers[b"content-type"] == b"application/problem+json"
    body = json.loads(refused[1]["body"])
    assert body["status"] == 503
    assert body["type"] == "urn:funnel:problem:overloaded"
    assert int(headers[b"content-length"]) == len(refused[1]["body"])
    assert inner.reached == 3  # the refused one never reached the app
    assert SHED.labels("POST")._value.get() == shed_before + 1

    inner.release.set()
    answers = await asyncio.gather(*held)
    assert [a[0]["status"] for a in answers] == [202, 202, 202]
    assert app.in_flight == 0
    assert (await _call(app))[0]["status"] == 202  # capacity is back


async def test_probes_and_the_scrape_are_never_refused() -> None:
    inner = _SlowApp()
    app = LoadSheddingMiddleware(inner, max_in_flight=1)
    held = asyncio.create_task(_call(app))
    await asyncio.sleep(0)
    inner.release.set()  # probes pass through; the held one may finish too
    for path in ("/healthz", "/readyz", "/metrics"):
        assert app.in_flight == 1  # still at the cap (the held request has not resumed)
        assert (await _call(app, path))[0]["status"] == 202
    assert (await _call(app))[0]["status"] == 503  # while business traffic is refused
    await held


async def test_a_failing_request_gives_its_slot_back() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    app = LoadSheddingMiddleware(broken, max_in_flight=1)
    for _ in range(2):  # the second would be refused with 503 if the first kept its slot
        with pytest.raises(RuntimeError, match="boom"):
            await _call(app)
    assert app.in_flight == 0


def test_the_cap_is_off_unless_a_service_sets_it() -> None:
    assert ServiceSettings().http_max_in_flight == 0
    assert ServiceSettings().db_pool_reset_on_release is False


async def test_the_slot_is_free_once_the_answer_is_sent_before_the_handler_unwinds() -> None:
    # A keep-alive client sends its next request as soon as it has the answer; the handler
    # that answered may still be unwinding. That next request must not find the server full.
    unwind = asyncio.Event()
    seen_in_flight: list[int] = []

    async def answers_then_unwinds(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        seen_in_flight.append(app.in_flight)
        await unwind.wait()

    app = LoadSheddingMiddleware(answers_then_unwinds, max_in_flight=1)
    first = asyncio.create_task(_call(app))
    await asyncio.sleep(0)
    assert seen_in_flight == [0]
    second = asyncio.create_task(_call(app))  # the same client's next request
    await asyncio.sleep(0)
    unwind.set()
    assert [(await t)[0]["status"] for t in (first, second)] == [202, 202]
    assert app.in_flight == 0


async def test_an_event_stream_gives_its_slot_back_once_it_started() -> None:
    # A dashboard's stream stays open for hours: counted as in flight, two of them would
    # shut out every other request of a server capped at two.
    done = asyncio.Event()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
        await done.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    app = LoadSheddingMiddleware(stream, max_in_flight=1)
    streams = [asyncio.create_task(_call(app, "/v1/funnels/f/snapshot/stream")) for _ in range(3)]
    await asyncio.sleep(0)
    assert app.in_flight == 0
    done.set()
    assert [(await s)[0]["status"] for s in streams] == [200, 200, 200]
    assert app.in_flight == 0  # and not below: each slot was given back once


async def test_a_chunked_answer_that_is_no_event_stream_keeps_its_slot_to_the_end() -> None:
    more = asyncio.Event()

    async def chunked(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/csv")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"a,b\n", "more_body": True})
        await more.wait()
        await send({"type": "http.response.body", "body": b"1,2\n", "more_body": False})

    app = LoadSheddingMiddleware(chunked, max_in_flight=1)
    first = asyncio.create_task(_call(app))
    await asyncio.sleep(0)
    assert app.in_flight == 1
    assert (await _call(app))[0]["status"] == 503
    more.set()
    assert (await first)[0]["status"] == 200
    assert app.in_flight == 0
