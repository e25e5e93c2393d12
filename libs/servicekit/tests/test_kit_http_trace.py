"""A request with no span recorded: `UnrecordedTraceMiddleware` gives the handler the trace
context that OpenTelemetry's FastAPI instrumentation gives it under a tracer provider that
records nothing, so an outbox row written in the request carries the same trace."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from test_kit_unrecorded_trace import ODD_PARENTS, PARENTS
from test_kit_unrecorded_trace import _parts as parts

from funnel_servicekit.http_trace import UnrecordedTraceMiddleware
from funnel_servicekit.service_app import create_service_app
from funnel_servicekit.telemetry import (
    current_span_id,
    current_trace_headers,
    current_trace_id,
    make_provider,
    unrecorded_child_headers,
)


def _app(light: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/headers")
    async def headers() -> dict[str, object]:
        # What an outbox row written here would carry (outbox._producer_trace, unrecorded).
        return {
            "row": unrecorded_child_headers(current_trace_headers()),
            "log": [current_trace_id(), current_span_id()],
        }

    if light:
        app.add_middleware(UnrecordedTraceMiddleware)
    else:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=make_provider("svc", None, {}), exclude_spans=["receive", "send"]
        )
    return app


async def _ask(app: FastAPI, parent: dict[str, str]) -> dict[str, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        answer = await client.get("/headers", headers=parent)
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


@pytest.mark.parametrize("parent", [*PARENTS, *ODD_PARENTS, {}])
async def test_a_request_carries_the_trace_the_instrumentation_would_give_it(
    parent: dict[str, str],
) -> None:
    light = await _ask(_app(light=True), parent)
    instrumented = await _ask(_app(light=False), parent)
    row, expected = light["row"], instrumented["row"]
    assert isinstance(row, dict)
    assert isinstance(expected, dict)
    assert set(row) == set(expected)
    version, trace_id, flags, state = parts(row)
    assert (version, flags, state) == (parts(expected)[0], *parts(expected)[2:])
    # The caller's trace goes on in both, or (no valid parent) each begins a new one.
    continued = parts(expected)[1] in parent.get("traceparent", "").lower()
    assert (trace_id == parts(expected)[1]) == continued
    assert (trace_id in parent.get("traceparent", "").lower()) == continued
    logged_trace, logged_span = light["log"]  # type: ignore[misc]
    assert logged_trace == trace_id  # log lines name the same trace
    assert logged_span is not None


async def test_each_request_is_a_span_of_its_own_and_a_new_trace_without_a_parent() -> None:
    app = _app(light=True)
    seen = [await _ask(app, {}) for _ in range(5)]
    traces = {s["log"][0] for s in seen}  # type: ignore[index]
    assert len(traces) == 5


def test_the_light_middleware_is_used_only_when_no_span_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi import APIRouter

    from funnel_servicekit import service_app
    from funnel_servicekit.settings import ServiceSettings

    def kinds(recorded: bool) -> list[type]:
        monkeypatch.setattr(service_app, "spans_recorded", lambda: recorded)
        app = create_service_app(
            ServiceSettings(),
            context=None,
            title="t",
            description="d",
            migrations_dir=service_app.Path("."),
            routers=[APIRouter()],
        )
        # FastAPI's own OpenTelemetry bridge stays off whatever the providers are: one
        # server span at most, no per-request span, metric and log record of its own.
        config = app._telemetry
        assert (config["tracing"], config["metrics"], config["logs"]) == (False, False, False)
        return [m.cls for m in app.user_middleware]  # type: ignore[misc]

    assert UnrecordedTraceMiddleware in kinds(recorded=False)
    assert UnrecordedTraceMiddleware not in kinds(recorded=True)
