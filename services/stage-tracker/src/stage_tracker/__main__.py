"""`python -m stage_tracker migrate|serve`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from funnel_servicekit.cli import run_cli
from stage_tracker.app import MIGRATIONS, create_app
from stage_tracker.settings import TrackerSettings


def main(argv: Sequence[str] | None = None) -> None:
    settings = TrackerSettings()
    run_cli(
        argv if argv is not None else sys.argv[1:],
        settings=settings,
        migrations_dir=MIGRATIONS,
        app_factory=lambda: create_app(settings),
    )


if __name__ == "__main__":
    main()
