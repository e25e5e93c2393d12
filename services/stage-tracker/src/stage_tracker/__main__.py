"""`python -m stage_tracker migrate|serve|replay`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from funnel_servicekit.cli import run_cli
from funnel_servicekit.db import create_pool
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.settings import TrackerSettings


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-commit",
        action="store_true",
        help="leave the consumer group's offsets alone (a rebuild to compare, not to take over)",
    )


async def _replay(settings: Any, args: argparse.Namespace) -> None:
    from stage_tracker.consumer import TOPICS, EventHandler
    from stage_tracker.funnel_registry import FunnelRegistry
    from stage_tracker.replay import replay

    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=2)
    try:
        handler = EventHandler(FunnelRegistry(), settings.db_schema, settings.service_name)
        counts = await replay(
            pool,
            settings.kafka_bootstrap_servers,
            TOPICS,
            handler,
            group_id=None if args.no_commit else settings.service_name,
        )
    finally:
        await pool.close()
    print(json.dumps(counts))


def main(argv: Sequence[str] | None = None) -> None:
    settings = TrackerSettings()
    run_cli(
        argv if argv is not None else sys.argv[1:],
        settings=settings,
        migrations_dir=MIGRATIONS,
        app_factory=lambda: create_app(settings),
        extra={
            "replay": (
                "rebuild an empty database from the topics, in event-time order",
                _configure_replay,
                _replay,
            )
        },
    )


if __name__ == "__main__":
    main()
