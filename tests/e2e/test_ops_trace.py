"""One trace from the form post to the sent email, across the real processes; no PII in spans
or logs.

The services export over OTLP/HTTP to a receiver in this test process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from funnel_devstack.stack import Stack
from tests.conftest import start_stack, stop_stack
from tests.e2e.client import StackClient
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

SPAN_KIND_SERVER, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER = 2, 4, 5
PEOPLE = [
    {
        "email": f"trace.person{i}@example.org",
        "first_name": f"Tracy{i}",
        "phone": f"+44 20 7946 09{i:02d}",
    }
    for i in range(5)
]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
async def stack(receiver: OtlpReceiver) -> AsyncIterator[Stack]:
    stack = await start_stack(
        "ops-trace",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",  # export every 200 ms, so the test waits little
        FUNNEL_LOG_LEVEL="DEBUG",  # the most a log could say about a person
    )
    try:
        yield stack
    finally:
        stop_stack(stack, "ops-trace")


def _in_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


async def test_one_trace_runs_from_the_form_post_through_tracker_and_notifier(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    client = StackClient(stack)
    response = await client.post_form(
        {"email": "one.trace@example.org", "first_name": "Ona"},
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    assert response.status_code == 202, response.text
    trace_id = "0af7651916cd43dd8448eb211c80319c"  # the caller's trace continues in ours

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = _in_trace(spans, trace_id)
        return {
            ("stage-tracker", "consume funnel.lead.captured.v2"),
            ("notifier", "consume funnel.stage.changed.v1"),
            ("reporting", "consume funnel.stage.changed.v1"),
            ("notifier", "send touch email"),
        } <= {(s.service, s.name) for s in mine}

    async def spans_now() -> list[ReceivedSpan]:
        return receiver.snapshot()

    spans = _in_trace(await eventually(spans_now, complete, timeout=60), trace_id)
    by_id = {s.span_id: s for s in spans}

    [http] = [s for s in spans if s.service == "lead-intake" and s.kind == SPAN_KIND_SERVER]
    assert http.parent_span_id == "b7ad6b7169203331"
    [captured] = [
        s
        for s in spans
        if s.service == "lead-intake" and s.name == "outbox funnel.lead.captured.v2"
    ]
    assert captured.kind == SPAN_KIND_PRODUCER
    [tracker] = [
        s
        for s in spans
        if s.service == "stage-tracker" and s.name == "consume funnel.lead.captured.v2"
    ]
    assert by_id[tracker.parent_span_id] == captured  # through the outbox row and Kafka headers
    [changed] = [
        s
        for s in spans
        if s.service == "stage-tracker" and s.name == "outbox funnel.stage.changed.v1"
    ]
    assert changed.kind == SPAN_KIND_PRODUCER
    assert changed.parent_span_id == tracker.span_id  # the tracker's outbox write, in its consume
    notifier = [s for s in spans if s.service == "notifier" and s.kind == SPAN_KIND_CONSUMER]
    assert {s.name for s in notifier} >= {
        "consume funnel.lead.captured.v2",
        "consume funnel.stage.changed.v1",
    }
    [stage_consumed] = [s for s in notifier if s.name == "consume funnel.stage.changed.v1"]
    assert by_id[stage_consumed.parent_span_id] == changed
    # The welcome email is sent under the trace stored with the touch: the end of the line.
    [send] = [s for s in spans if s.service == "notifier" and s.name == "send touch email"]
    assert send.attributes["funnel.touch.channel"] == "email"
    assert send.parent_span_id in by_id
    reporting = [s for s in spans if s.service == "reporting" and s.kind == SPAN_KIND_CONSUMER]
    assert reporting, "reporting consumes the stage event in the same trace"


async def test_no_email_phone_or_name_in_spans_or_logs(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    client = StackClient(stack)
    statuses = await client.post_many(PEOPLE)
    assert statuses == [202] * len(PEOPLE)
    await eventually(client.mail_count, lambda n: n >= len(PEOPLE) + 1, timeout=60)
    personal = [v for p in PEOPLE for v in (p["email"], p["phone"], p["first_name"])]
    personal += [p["phone"].replace(" ", "") for p in PEOPLE]

    exported = b"".join(receiver.raw)
    assert exported, "the services exported spans"
    logs = {path.name: path.read_bytes() for path in Path(stack.logs).glob("*.log")}
    assert {"lead-intake.log", "stage-tracker.log", "notifier.log", "reporting.log"} <= set(logs)
    for value in personal:
        needle = value.encode()
        assert needle not in exported, f"{value!r} in an exported span"
        for name, text in logs.items():
            if name == "mailbox.log":
                continue  # the SMTP catcher stands for the recipient's mail server
            assert needle not in text, f"{value!r} in {name}"
    for service in ("lead-intake", "stage-tracker", "notifier", "reporting"):
        records = [
            json.loads(line)
            for line in logs[f"{service}.log"].splitlines()
            if line.startswith(b"{")
        ]
        assert records, service
        assert all({"trace_id", "span_id", "service"} <= set(r) for r in records), service
