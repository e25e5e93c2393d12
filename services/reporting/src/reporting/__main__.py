"""`python -m reporting migrate|serve|rebuild`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from funnel_servicekit.cli import run_cli
from reporting import rebuild
from reporting.app import MIGRATIONS, create_app
from reporting.settings import ReportingSettings


def main(argv: Sequence[str] | None = None) -> None:
    settings = ReportingSettings()
    run_cli(
        argv if argv is not None else sys.argv[1:],
        settings=settings,
        migrations_dir=MIGRATIONS,
        app_factory=lambda: create_app(settings),
        extra={
            "rebuild": (
                "replay every topic from the start into fresh tables",
                rebuild.configure,
                rebuild.command,
            )
        },
    )


if __name__ == "__main__":
    main()
