"""One JSON line per record, with the service and trace ids; chatty client loggers quieted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from funnel_servicekit.json_logging import setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "aiokafka")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


@pytest.mark.usefixtures("restored_logging")
def test_lines_are_json_and_outgoing_calls_are_not_logged_at_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("notifier", "INFO")
    logging.getLogger("notifier.sender").info("touch sent")
    logging.getLogger("httpx").info("HTTP Request: GET http://intake/v1/leads/1/data-key")
    logging.getLogger("httpx").warning("retrying")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["logger"], x["level"], x["message"]) for x in lines] == [
        ("notifier.sender", "INFO", "touch sent"),
        ("httpx", "WARNING", "retrying"),
    ]
    assert all(x["service"] == "notifier" and "trace_id" in x for x in lines)
