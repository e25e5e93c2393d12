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
# The pipeline's real time, hop by hop, each measured from the event's own time (set when the
# event was written): "published" when the outbox relay's copy is acknowledged by Kafka,
# "committed" when a consumer's effects of it are committed. Per process, so the scrape target
# tells which service's hop it is; a lead's way to the report is the sum of the hops.
EVENT_HOP_SECONDS = Histogram(
    "funnel_event_hop_seconds",
    "Seconds from an event's time to a hop done (published by the relay, committed by a consumer)",
    ["hop", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
WORKER_RESTARTS = Counter(
    "funnel_worker_restarts_total", "Background loops restarted after a crash", ["worker"]
)
