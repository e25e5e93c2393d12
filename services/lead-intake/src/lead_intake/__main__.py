"""`python -m lead_intake migrate|serve|seed-form|index-people`."""

from __future__ import annotations

import argparse

from funnel_servicekit.cli import service_main
from funnel_servicekit.db import connect
from lead_intake.app import MIGRATIONS, create_app
from lead_intake.common.blind_index import BlindIndex
from lead_intake.forms.models import UNLIMITED, FormIn
from lead_intake.forms.service import seed_form
from lead_intake.people.service import index_everyone
from lead_intake.settings import IntakeSettings


def _configure_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--form-id", default="demo")
    parser.add_argument("--funnel-id", default="digital-sales")
    parser.add_argument("--name", default="Demo landing page")
    # The demo form is the target of `funnel demo` and the benchmarks, all from one address.
    parser.add_argument("--rate-limit-per-ip", default=UNLIMITED)
    parser.add_argument("--rate-limit-per-form", default=UNLIMITED)
    parser.add_argument("--allowed-origin", action="append", default=[])


async def _seed_form(settings: IntakeSettings, args: argparse.Namespace) -> None:
    definition = FormIn(
        funnel_id=args.funnel_id,
        name=args.name,
        allowed_origins=tuple(args.allowed_origin),
        rate_limit_per_ip=args.rate_limit_per_ip,
        rate_limit_per_form=args.rate_limit_per_form,
    )
    conn = await connect(settings.database_url, settings.db_schema)
    try:
        await seed_form(conn, args.form_id, definition)
    finally:
        await conn.close()


def _configure_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=500, help="people per transaction")


async def _index_people(settings: IntakeSettings, args: argparse.Namespace) -> None:
    """Index every person for search: leads captured before the index, or a new search key."""
    conn = await connect(settings.database_url, settings.db_schema)
    try:
        count = await index_everyone(conn, BlindIndex(settings.search_key()), batch=args.batch)
    finally:
        await conn.close()
    print(f"indexed {count} people")


main = service_main(
    IntakeSettings,
    create_app,
    MIGRATIONS,
    {
        "seed-form": ("create or update a form", _configure_seed, _seed_form),
        "index-people": ("index every person for search again", _configure_index, _index_people),
    },
)

if __name__ == "__main__":
    main()
