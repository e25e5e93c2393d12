"""Prometheus metrics shared by every service, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "funnel_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "funnel_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
OUTBOX_PUBLISHED = Counter("funnel_outbox_published_total", "Outbox rows published", ["topic"])
OUTBOX_BACKLOG = Gauge("funnel_outbox_backlog", "Outbox rows waiting to be published")
OUTBOX_OLDEST_AGE = Gauge("funnel_outbox_oldest_age_seconds", "Age of the oldest unpublished row")
EVENTS_CONSUMED = Counter(
    "funnel_events_consumed_total", "Events consumed", ["topic", "event_type", "outcome"]
)
DEAD_LETTERS = Counter(
    "funnel_dead_letters_total", "Records sent to a dead-letter topic", ["topic"]
)
CONSUMER_LAG = Gauge(
    "funnel_consumer_lag", "Records behind the partition end", ["topic", "partition"]
)
WORKER_RESTARTS = Counter(
    "funnel_worker_restarts_total", "Background loops restarted after a crash", ["worker"]
)
