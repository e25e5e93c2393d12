"""`python -m lead_intake migrate|serve|seed-form`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from funnel_servicekit.cli import run_cli
from funnel_servicekit.db import connect
from lead_intake import store
from lead_intake.app import MIGRATIONS, create_app
from lead_intake.settings import IntakeSettings


def _configure_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--form-id", default="demo")
    parser.add_argument("--funnel-id", default="digital-sales")
    parser.add_argument("--name", default="Demo landing page")


async def _seed_form(settings: IntakeSettings, args: argparse.Namespace) -> None:
    conn = await connect(settings.database_url, settings.db_schema)
    try:
        await store.upsert_form(conn, store.Form(args.form_id, args.funnel_id, args.name))
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = IntakeSettings()
    run_cli(
        argv if argv is not None else sys.argv[1:],
        settings=settings,
        migrations_dir=MIGRATIONS,
        app_factory=lambda: create_app(settings),
        extra={"seed-form": ("create or update a form", _configure_seed, _seed_form)},
    )


if __name__ == "__main__":
    main()
