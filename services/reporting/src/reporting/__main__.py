"""`python -m reporting migrate|serve|rebuild`."""

from __future__ import annotations

from funnel_servicekit.cli import service_main
from reporting.app import create_app
from reporting.projection import rebuild
from reporting.settings import MIGRATIONS, ReportingSettings

main = service_main(
    ReportingSettings,
    create_app,
    MIGRATIONS,
    {
        "rebuild": (
            "replay every topic from the start into fresh tables",
            rebuild.configure,
            rebuild.command,
        )
    },
)

if __name__ == "__main__":
    main()
