"""`python -m notifier migrate|serve`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from funnel_servicekit.cli import run_cli
from notifier.app import MIGRATIONS, create_app
from notifier.settings import NotifierSettings


def main(argv: Sequence[str] | None = None) -> None:
    settings = NotifierSettings()
    run_cli(
        argv if argv is not None else sys.argv[1:],
        settings=settings,
        migrations_dir=MIGRATIONS,
        app_factory=lambda: create_app(settings),
    )


if __name__ == "__main__":
    main()
