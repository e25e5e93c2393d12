"""`python -m stage_tracker migrate|serve|rebuild` (`replay`: rebuild's older name)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from funnel_servicekit.cli import service_main
from funnel_servicekit.db import create_pool
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.settings import TrackerSettings

REBUILD_HELP = "rebuild an empty database from the topics, in event-time order"


def _configure_rebuild(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-commit",
        action="store_true",
        help="leave the consumer group's offsets alone (a rebuild to compare, not to take over)",
    )


async def _rebuild(settings: Any, args: argparse.Namespace) -> None:
    from stage_tracker.funnels.service import FunnelRegistry
    from stage_tracker.moves.consumer import TOPICS, EventHandler
    from stage_tracker.rebuild import rebuild

    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=2)
    try:
        handler = EventHandler(FunnelRegistry(), settings.db_schema, settings.service_name)
        counts = await rebuild(
            pool,
            settings.kafka_bootstrap_servers,
            TOPICS,
            handler,
            group_id=None if args.no_commit else settings.service_name,
        )
    finally:
        await pool.close()
    print(json.dumps(counts))


main = service_main(
    TrackerSettings,
    create_app,
    MIGRATIONS,
    {
        "rebuild": (REBUILD_HELP, _configure_rebuild, _rebuild),
        # The older name, still called by deploy manifests and runbooks.
        "replay": (f"{REBUILD_HELP} (same as rebuild)", _configure_rebuild, _rebuild),
    },
)

if __name__ == "__main__":
    main()
