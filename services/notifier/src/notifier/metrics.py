"""The notifier's own Prometheus metrics (beside the kit's)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TOUCH_OUTCOMES = Counter(
    "funnel_notifier_touches_total", "Touch decisions and outcomes", ["channel", "outcome"]
)
SEND_LAG = Histogram(
    "funnel_notifier_send_lag_seconds",
    "From a touch's due time to its hand-off to the channel",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
