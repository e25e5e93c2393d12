"""reporting's wiring, as the README's tour draws it (tests/consistency checks it)."""

from funnel_contracts.topics import ALL_TOPICS
from funnel_contracts.topology import ServiceInterface

INTERFACE = ServiceInterface(
    name="reporting",
    port=8004,
    schema="reporting",
    produces=(),
    consumes=ALL_TOPICS,
)
