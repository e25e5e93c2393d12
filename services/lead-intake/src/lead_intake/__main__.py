"""`python -m lead_intake migrate|serve|seed-form`."""

from __future__ import annotations

import argparse

from funnel_servicekit.cli import service_main
from funnel_servicekit.db import connect
from lead_intake.app import MIGRATIONS, create_app
from lead_intake.forms.models import UNLIMITED, FormIn
from lead_intake.forms.service import seed_form
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


main = service_main(
    IntakeSettings,
    create_app,
    MIGRATIONS,
    {"seed-form": ("create or update a form", _configure_seed, _seed_form)},
)

if __name__ == "__main__":
    main()
