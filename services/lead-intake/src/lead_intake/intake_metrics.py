"""lead-intake's own Prometheus counters (served with the kit's at /metrics)."""

from prometheus_client import Counter

HONEYPOT_DROPPED = Counter(
    "funnel_intake_honeypot_dropped_total",
    "Form posts with the honeypot filled: answered as usual, stored nowhere",
    ["form_id"],
)
RATE_LIMITED = Counter(
    "funnel_intake_rate_limited_total", "Public requests refused with 429", ["endpoint"]
)
IDEMPOTENT_REPLAYS = Counter(
    "funnel_intake_idempotent_replays_total", "Retries answered from a stored response"
)
