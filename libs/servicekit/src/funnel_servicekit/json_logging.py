"""JSON log lines on stdout, each with the service name and the current trace and span ids."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from funnel_servicekit.telemetry import current_span_id, current_trace_id


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.trace_id = current_trace_id()
        record.span_id = current_span_id()
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route every logger (uvicorn's and aiokafka's included) to one JSON stream."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every outgoing call at INFO (a line per data-key fetch, per webhook).
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
